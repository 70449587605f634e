import type { ImageInputSpec } from '../bundle/manifest.ts'
import { CtrError } from '../errors.ts'
import type { Metrics } from '../metrics.ts'
import type { EncoderPool } from './encoder-pool.ts'
import { HostLimiter } from '../util/host-limiter.ts'

export type Modality = 'image' | 'text'

export interface EmbedRequest {
  readonly key: string
  readonly input: string
}

export type EmbedFailure = { ok: false; error: Error; permanent: boolean }
export type EmbedResult = { ok: true; vector: Float32Array } | EmbedFailure

/** Where computed embeddings go (the tiered store). */
export interface EmbeddingSink {
  store(entries: Array<{ key: string; vector: Float32Array }>): Promise<unknown>
}

/** Fetch + decode + normalise one image URL into the encoder's input tensor. */
export type ImageLoader = (url: string, deadline: number) => Promise<{ tensor: Float32Array }>

export interface EmbeddingServiceDeps {
  readonly imagePool: EncoderPool
  readonly textPool: EncoderPool
  readonly imageSpec: ImageInputSpec
  readonly loadImage: ImageLoader
  readonly sink: EmbeddingSink
  readonly metrics: Pick<Metrics, 'embedSeconds'>
  readonly hostConcurrency: number
}

function asFailure(err: unknown): EmbedFailure {
  const error = err instanceof Error ? err : new Error(String(err))
  return { ok: false, error, permanent: err instanceof CtrError && err.permanent }
}

function hostOf(url: string): string {
  try { return new URL(url).host } catch { return '' }
}

/**
 * Computes embeddings in micro-batches (one encoder call per batch) and writes them to the cache.
 * Concurrent requests for one key share one computation (single flight within the instance).
 */
export class EmbeddingService {
  private readonly inFlight = new Map<string, Promise<EmbedResult>>()
  private readonly hosts: HostLimiter
  /** Smoothed cost of one call, per modality; the `budget` policy compares it with what is left. */
  readonly costMs: Record<Modality, number> = { image: 50, text: 10 }

  constructor(private readonly deps: EmbeddingServiceDeps) {
    this.hosts = new HostLimiter(deps.hostConcurrency)
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
      void p.finally(() => this.inFlight.delete(r.key))
    })
    return Promise.all(waiters.map((w) => (typeof w === 'number' ? batch.then((rs) => rs[w] as EmbedResult) : w)))
  }

  private async computeFresh(modality: Modality, reqs: readonly EmbedRequest[], deadline: number): Promise<EmbedResult[]> {
    const t0 = performance.now()
    const results = modality === 'image' ? await this.computeImages(reqs, deadline) : await this.computeTexts(reqs)
    const ms = performance.now() - t0
    this.deps.metrics.embedSeconds.observe({ modality }, ms / 1000)
    this.costMs[modality] = 0.8 * this.costMs[modality] + 0.2 * ms
    const entries: Array<{ key: string; vector: Float32Array }> = []
    results.forEach((r, i) => { if (r.ok) entries.push({ key: (reqs[i] as EmbedRequest).key, vector: r.vector }) })
    if (entries.length > 0) await this.deps.sink.store(entries)
    return results
  }

  private async computeTexts(reqs: readonly EmbedRequest[]): Promise<EmbedResult[]> {
    try {
      const { embeddings, inputIds } = await this.deps.textPool.embedTexts(reqs.map((r) => r.input))
      const dim = embeddings.length / reqs.length
      // A title with no tokens is absent to the model (bundle-format.md "Text"): the OOV vector stands.
      return reqs.map((_, i) => ((inputIds[i]?.length ?? 0) === 0
        ? { ok: false, error: new Error('title has no tokens'), permanent: true }
        : { ok: true, vector: embeddings.slice(i * dim, (i + 1) * dim) }))
    } catch (err) {
      return reqs.map(() => asFailure(err))
    }
  }

  private async computeImages(reqs: readonly EmbedRequest[], deadline: number): Promise<EmbedResult[]> {
    const loaded = await Promise.all(reqs.map((r) => this.hosts.run(hostOf(r.input), () => this.deps.loadImage(r.input, deadline))
      .then((x) => ({ ok: true as const, tensor: x.tensor }), (err: unknown) => asFailure(err))))
    const okIdx: number[] = []
    loaded.forEach((l, i) => { if (l.ok) okIdx.push(i) })
    const results: EmbedResult[] = loaded.map((l) => (l.ok ? asFailure(new Error('not computed')) : l))
    if (okIdx.length === 0) return results
    const { height, width } = this.deps.imageSpec
    const per = 3 * height * width
    const batch = new Float32Array(okIdx.length * per)
    okIdx.forEach((idx, j) => {
      const l = loaded[idx]
      if (l?.ok) batch.set(l.tensor, j * per)
    })
    try {
      const emb = await this.deps.imagePool.embedImages(okIdx.length, batch)
      const dim = emb.length / okIdx.length
      okIdx.forEach((idx, j) => { results[idx] = { ok: true, vector: emb.slice(j * dim, (j + 1) * dim) } })
    } catch (err) {
      for (const idx of okIdx) results[idx] = asFailure(err)
    }
    return results
  }
}
