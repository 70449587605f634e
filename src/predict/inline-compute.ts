// The `budget` policy's inline work, bounded by the server and not by the caller: at most
// `maxItems` misses per modality per request, at most `permits.limit` in the whole process, only
// misses whose conservative cost fits the time left, cheapest first (titles before images). Work still running at the deadline is
// abandoned by the request (OOV) and ends on its own: the fetch is aborted at the deadline and the
// encoder skips inputs whose deadline has passed (encoder-worker.ts); its permits are held until then.
import type { EmbeddingService, Modality } from '../embedding/embedding-service.ts'
import { settleWithin } from '../util/settle-within.ts'
import type { ModalityInputs, ResolvedModality } from './embedding-lookup.ts'
import type { InlinePermits } from './inline-permits.ts'

export type DegradeReason = 'inline-item-cap' | 'inline-busy' | 'inline-no-time' | 'inline-abandoned' | 'lookup-skipped'

export interface InlineComputeDeps {
  readonly embedder: Pick<EmbeddingService, 'compute' | 'estimateMs'>
  readonly permits: InlinePermits
  /** INLINE_MAX_ITEMS */
  readonly maxItems: number
}

interface Candidate {
  readonly modality: Modality
  readonly key: string
  readonly input: string
  readonly costMs: number
}

/** Misses of both modalities, one per distinct key, with their estimated cost. */
function candidatesOf(mods: readonly ModalityInputs[], resolved: readonly ResolvedModality[], estimate: (m: Modality, input: string) => number): Candidate[] {
  const byKey = new Map<string, Candidate>()
  mods.forEach((m, j) => {
    (resolved[j] as ResolvedModality).sources.forEach((s, i) => {
      const key = m.keys[i]
      if (s !== 'oov' || key === undefined || byKey.has(key)) return
      const input = m.inputs[i] as string
      byKey.set(key, { modality: m.modality, key, input, costMs: estimate(m.modality, input) })
    })
  })
  return [...byKey.values()]
}

export class InlineCompute {
  constructor(private readonly d: InlineComputeDeps) {}

  /**
   * Computes what fits before `until` and writes it into `resolved` (source `computed`); returns
   * why less than every miss was computed.
   */
  async run(mods: readonly ModalityInputs[], resolved: readonly ResolvedModality[], until: number): Promise<Set<DegradeReason>> {
    const reasons = new Set<DegradeReason>()
    const left = until - Date.now()
    const all = candidatesOf(mods, resolved, (m, input) => this.d.embedder.estimateMs(m, input))
    if (all.length === 0) return reasons
    const fitting = all.filter((c) => c.costMs <= left).sort((a, b) => a.costMs - b.costMs)
    if (fitting.length < all.length) reasons.add('inline-no-time')
    // The cap is per modality: an item's title does not take its image's place.
    const capped = (['text', 'image'] as const).flatMap((m) => fitting.filter((c) => c.modality === m).slice(0, this.d.maxItems))
    if (capped.length < fitting.length) reasons.add('inline-item-cap')
    const granted = this.d.permits.tryTake(capped.length)
    if (granted < capped.length) reasons.add('inline-busy')
    if (granted === 0) return reasons
    const chosen = capped.slice(0, granted)
    const vectors = new Map<string, Float32Array>()
    const abandoned = await Promise.all((['image', 'text'] as const).map((modality) => this.computeOne(modality, chosen.filter((c) => c.modality === modality), until, vectors)))
    if (abandoned.some(Boolean)) reasons.add('inline-abandoned')
    mods.forEach((m, j) => {
      const r = resolved[j] as ResolvedModality
      r.sources.forEach((s, i) => {
        const v = s === 'oov' ? vectors.get(m.keys[i] as string) : undefined
        if (v) { r.vectors[i] = v; r.sources[i] = 'computed' }
      })
    })
    return reasons
  }

  /** One encoder call for `batch`; true when the request stopped waiting for it at `until`. */
  private async computeOne(modality: Modality, batch: readonly Candidate[], until: number, out: Map<string, Float32Array>): Promise<boolean> {
    if (batch.length === 0) return false
    const work = this.d.embedder.compute(modality, batch.map((c) => ({ key: c.key, input: c.input })), until)
    // The permits return when the work really ends, not when the request gives up on it.
    void work.finally(() => this.d.permits.give(batch.length)).catch(() => undefined)
    const settled = await settleWithin(() => work, until - Date.now())
    if (!settled.ok) return settled.timedOut
    settled.value.forEach((res, i) => { if (res.ok) out.set((batch[i] as Candidate).key, res.vector) })
    return false
  }
}
