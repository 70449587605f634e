import type { Bundle } from '../bundle/load-bundle.ts'
import type { EmbedJob } from '../queue/types.ts'
import type { EmbeddingService, Modality } from '../embedding/embedding-service.ts'
import type { FieldFeatures } from '../fusion/field-features.ts'
import type { Head, HeadInputs } from '../fusion/head.ts'
import type { Metrics } from '../metrics.ts'
import { ctrDistribution } from '../mdn/distribution.ts'
import { CtrError } from '../errors.ts'
import { settleWithin } from '../util/settle-within.ts'
import { ITEM_KEYS } from './predict-schema.ts'
import { type EmbeddingLookup, type ModalityInputs, type ResolvedModality, distinctKeys, resolveFromLookup } from './embedding-lookup.ts'
import type { MissPolicy, PredictBody, Prediction, Source } from './types.ts'

export type KeyFn = (modality: Modality, input: string) => string

export interface PredictDeps {
  readonly bundle: Bundle
  readonly store: EmbeddingLookup
  readonly queue: { enqueue(jobs: EmbedJob[]): Promise<number> }
  readonly embedder: Pick<EmbeddingService, 'compute' | 'costMs'>
  readonly head: Pick<Head, 'runWith'>
  readonly fields: FieldFeatures
  readonly metrics: Pick<Metrics, 'requestStage' | 'sources'>
  readonly keyOf: KeyFn
  readonly defaults: { readonly budgetMs: number; readonly missPolicy: MissPolicy }
  readonly log: { warn(o: object, m: string): void }
}

export interface PredictResult {
  model: { name: string; version: string }
  predictions: Prediction[]
  warnings: string[]
  timing_ms: Record<string, number>
}

// Head + statistics for a few hundred items take a few ms; keep that much of the budget for them.
const HEAD_RESERVE_MS = 15

function round3(x: number): number {
  return Math.round(x * 1000) / 1000
}

/** The request path: keys → tiered lookup → misses by policy → one head run → distributions. */
export class PredictService {
  constructor(private readonly d: PredictDeps) {}

  async predict(body: PredictBody, startedAt: number): Promise<PredictResult> {
    const t0 = performance.now()
    const budget = body.options?.budget_ms ?? this.d.defaults.budgetMs
    if (!Number.isFinite(budget)) throw new CtrError('BAD_FIELD', ['body/options/budget_ms', 'must be a finite number'])
    const deadline = startedAt + budget
    const policy = body.options?.miss_policy ?? this.d.defaults.missPolicy
    const items = body.items
    const warnings = new Set<string>()

    const mods: ModalityInputs[] = (['image', 'text'] as const).map((modality) => {
      const inputs = items.map((it) => {
        const v = modality === 'image' ? it.image_url : it.title
        // Whitespace-only titles tokenize to nothing: absent, like a missing title.
        return v === undefined || v.trim().length === 0 ? undefined : v
      })
      return { modality, inputs, keys: inputs.map((v) => (v === undefined ? undefined : this.d.keyOf(modality, v))) }
    })
    const keys = distinctKeys(mods)
    const found = new Map<string, { vector: Float32Array; tier: 'l1' | 'l2' }>()
    const hits = keys.length > 0 ? await this.d.store.lookup(keys, deadline - HEAD_RESERVE_MS) : []
    hits.forEach((h, i) => { if (h) found.set(keys[i] as string, h) })
    const t1 = performance.now()
    const resolved = mods.map((m) => resolveFromLookup(m, found))
    if (policy === 'budget') await Promise.all(mods.map((m, i) => this.computeWithinBudget(m, resolved[i] as ResolvedModality, deadline)))
    const t2 = performance.now()
    const [image, text] = resolved as [ResolvedModality, ResolvedModality]
    // Fields are checked while the head's inputs are filled: a 400 there queues no jobs.
    const out = await this.d.head.runWith(items.length, (x) => this.assemble(x, body, image, text, warnings))
    mods.forEach((m, i) => this.enqueueMisses(m, resolved[i] as ResolvedModality))
    const t3 = performance.now()
    const predictions: Prediction[] = items.map((it, i) => ({
      id: it.id,
      ctr: ctrDistribution(this.d.bundle.manifest, out.pi, out.mu, out.sigma, i),
      sources: { image: image.sources[i] as Source, text: text.sources[i] as Source },
    }))
    const t4 = performance.now()
    this.countSources(image.sources, 'image')
    this.countSources(text.sources, 'text')
    const timing = { total: t4 - t0, lookup: t1 - t0, compute: t2 - t1, head: t3 - t2, stats: t4 - t3 }
    for (const [stage, ms] of Object.entries(timing)) this.d.metrics.requestStage.observe({ stage }, ms / 1000)
    const m = this.d.bundle.manifest
    return {
      model: { name: m.name, version: m.version },
      predictions,
      warnings: [...warnings],
      timing_ms: Object.fromEntries(Object.entries(timing).map(([k, v]) => [k, round3(v)])),
    }
  }

  private async computeWithinBudget(m: ModalityInputs, r: ResolvedModality, deadline: number): Promise<void> {
    const left = deadline - Date.now() - HEAD_RESERVE_MS
    if (left < this.d.embedder.costMs[m.modality]) return
    const idx: number[] = []
    const reqs = new Map<string, string>()
    r.sources.forEach((s, i) => {
      if (s !== 'oov') return
      idx.push(i)
      reqs.set(m.keys[i] as string, m.inputs[i] as string)
    })
    if (reqs.size === 0) return
    const entries = [...reqs.entries()]
    const settled = await settleWithin(
      () => this.d.embedder.compute(m.modality, entries.map(([key, input]) => ({ key, input })), deadline - HEAD_RESERVE_MS),
      deadline - HEAD_RESERVE_MS - Date.now(),
    )
    if (!settled.ok) return
    const byKey = new Map<string, Float32Array>()
    settled.value.forEach((res, j) => { if (res.ok) byKey.set((entries[j] as [string, string])[0], res.vector) })
    for (const i of idx) {
      const v = byKey.get(m.keys[i] as string)
      if (v) { r.vectors[i] = v; r.sources[i] = 'computed' }
    }
  }

  private enqueueMisses(m: ModalityInputs, r: ResolvedModality): void {
    const jobs = new Map<string, EmbedJob>()
    r.sources.forEach((s, i) => {
      const key = m.keys[i]
      if (s === 'oov' && key !== undefined) jobs.set(key, { key, modality: m.modality, input: m.inputs[i] as string })
    })
    if (jobs.size === 0) return
    this.d.queue.enqueue([...jobs.values()]).catch((err: unknown) => this.d.log.warn({ err: String(err) }, 'enqueue failed'))
  }

  /** Write every element of the head's inputs for this request (x comes from Head.runWith). */
  private assemble(x: HeadInputs, body: PredictBody, image: ResolvedModality, text: ResolvedModality, warnings: Set<string>): void {
    const b = this.d.bundle
    const di = b.oov.image.length
    const dt = b.oov.text.length
    const df = b.fieldsDim
    const ctxRow = new Float32Array(df)
    this.d.fields.fill(ctxRow, 0, 'context', body.context, 'body/context', warnings)
    body.items.forEach((it, i) => {
      const iv = image.vectors[i]
      x.image.set(iv ?? b.oov.image, i * di)
      x.imageOov[i] = iv ? 0 : 1
      const tv = text.vectors[i]
      x.text.set(tv ?? b.oov.text, i * dt)
      x.textOov[i] = tv ? 0 : 1
      x.fields.set(ctxRow, i * df)
      this.d.fields.fill(x.fields, i * df, 'item', it, `body/items/${i}`, warnings)
      for (const k of Object.keys(it)) if (!ITEM_KEYS.has(k)) warnings.add(`body/items/*/${k}: unknown property, ignored`)
    })
  }

  private countSources(sources: readonly Source[], modality: Modality): void {
    const counts = new Map<Source, number>()
    for (const s of sources) counts.set(s, (counts.get(s) ?? 0) + 1)
    for (const [source, c] of counts) this.d.metrics.sources.inc({ modality, source }, c)
  }
}
