import { CtrError } from '../errors.ts'
import type { Metrics } from '../metrics.ts'
import { CostModel, hostOf } from './cost-model.ts'
import type { EncoderPool } from './encoder-pool.ts'

export type { Modality } from '../modalities/modality.ts'
import type { Modality } from '../modalities/modality.ts'

export interface EmbedRequest {
  readonly key: string
  readonly input: string
}

export type EmbedFailure = { ok: false; error: Error; permanent: boolean }
/**
 * `stored`: the service's own write of this vector reached the shared tier (Redis): the whole
 * batch's write was confirmed. Always false without Redis. The job handler acknowledges on it
 * instead of writing the vector a second time.
 */
export type EmbedResult = { ok: true; vector: Float32Array; stored: boolean } | EmbedFailure

/** Where computed embeddings go (the tiered store); resolves with how many reached Redis. */
export interface EmbeddingSink {
  store(entries: Array<{ key: string; vector: Float32Array }>): Promise<number>
}

export interface EmbeddingServiceDeps {
  readonly imagePool: EncoderPool
  readonly textPool: EncoderPool
  readonly sink: EmbeddingSink
  readonly metrics: Pick<Metrics, 'embedSeconds' | 'fetchFailures'>
  /** Learns what one computation costs (default: DEFAULT_COST_MODEL). */
  readonly cost?: CostModel
}

function asFailure(err: unknown): EmbedFailure {
  const error = err instanceof Error ? err : new Error(String(err))
  return { ok: false, error, permanent: err instanceof CtrError && err.permanent }
}

/**
 * Computes embeddings in micro-batches (one encoder call per batch) and writes them to the cache.
 * Image URLs are fetched, decoded and normalised inside the image worker, not on this thread.
 * Concurrent requests for one key share one computation (single flight within the instance).
 */
export class EmbeddingService {
  private readonly inFlight = new Map<string, Promise<EmbedResult>>()
  private readonly cost: CostModel

  constructor(private readonly deps: EmbeddingServiceDeps) {
    this.cost = deps.cost ?? new CostModel()
  }

  /** Conservative time to compute `input` now (the `budget` policy compares it with what is left). */
  estimateMs(modality: Modality, input: string): number {
    return this.cost.estimateMs(modality, modality === 'image' ? hostOf(input) : undefined)
  }

  compute(modality: Modality, reqs: readonly EmbedRequest[], deadline: number): Promise<EmbedResult[]> {
    const fresh: EmbedRequest[] = []
    const waiters: Array<Promise<EmbedResult> | number> = reqs.map((r) => {
      const p = this.inFlight.get(r.key)
      if (p) return p
      fresh.push(r)
      return fresh.length - 1
    })
    const batch = fresh.length > 0 ? this.computeFresh(modality, fresh, deadline) : Promise.resolve([])
    fresh.forEach((r, i) => {
      const p = batch.then((rs) => rs[i] as EmbedResult)
      this.inFlight.set(r.key, p)
      // Both outcomes end the flight; the rejection itself reaches the callers through `waiters`,
      // so this chain must not reject unhandled (Node 20 exits on an unhandled rejection).
      const done = (): void => { this.inFlight.delete(r.key) }
      p.then(done, done)
    })
    return Promise.all(waiters.map((w) => (typeof w === 'number' ? batch.then((rs) => rs[w] as EmbedResult) : w)))
  }

  private async computeFresh(modality: Modality, reqs: readonly EmbedRequest[], deadline: number): Promise<EmbedResult[]> {
    const t0 = performance.now()
    const results = modality === 'image' ? await this.computeImages(reqs, deadline) : await this.computeTexts(reqs)
    const ms = performance.now() - t0
    this.deps.metrics.embedSeconds.observe({ modality }, ms / 1000)
    // Every item of a call waited for the whole call (one encoder run): each host is charged all of it.
    if (modality === 'text') this.cost.observe('text', undefined, ms)
    else for (const host of new Set(reqs.map((r) => hostOf(r.input)))) this.cost.observe('image', host, ms)
    const entries: Array<{ key: string; vector: Float32Array }> = []
    results.forEach((r, i) => { if (r.ok) entries.push({ key: (reqs[i] as EmbedRequest).key, vector: r.vector }) })
    if (entries.length === 0) return results
    // One write per batch; its count is all that says whether Redis holds the vectors.
    const stored = await this.deps.sink.store(entries) >= entries.length
    return results.map((r) => (r.ok ? { ...r, stored } : r))
  }

  private async computeTexts(reqs: readonly EmbedRequest[]): Promise<EmbedResult[]> {
    try {
      const { embeddings, inputIds } = await this.deps.textPool.embedTexts(reqs.map((r) => r.input))
      const dim = embeddings.length / reqs.length
      // A title with no tokens is absent to the model (bundle-format.md "Text"): the OOV vector stands.
      return reqs.map((_, i) => ((inputIds[i]?.length ?? 0) === 0
        ? { ok: false, error: new Error('title has no tokens'), permanent: true }
        : { ok: true, vector: embeddings.slice(i * dim, (i + 1) * dim), stored: false }))
    } catch (err) {
      return reqs.map(() => asFailure(err))
    }
  }

  private async computeImages(reqs: readonly EmbedRequest[], deadline: number): Promise<EmbedResult[]> {
    try {
      const r = await this.deps.imagePool.embedImageUrls(reqs.map((q) => q.input), deadline)
      for (const reason of r.fetchReasons) this.deps.metrics.fetchFailures.inc({ reason })
      const results: EmbedResult[] = reqs.map(() => asFailure(new Error('not computed')))
      const dim = r.embedded.length > 0 ? r.embeddings.length / r.embedded.length : 0
      r.embedded.forEach((index, j) => { results[index] = { ok: true, vector: r.embeddings.slice(j * dim, (j + 1) * dim), stored: false } })
      for (const f of r.failures) {
        // The reason travels as the cause, as the fetcher's own errors carry it.
        const error = new Error(f.message, f.reason ? { cause: { reason: f.reason } } : undefined)
        results[f.index] = { ok: false, error, permanent: f.permanent }
      }
      return results
    } catch (err) {
      return reqs.map(() => asFailure(err))
    }
  }

}
