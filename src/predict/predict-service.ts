import type { Bundle } from '../bundle/load-bundle.ts'
import type { EmbedJob } from '../queue/types.ts'
import type { Modality } from '../embedding/embedding-service.ts'
import type { FieldFeatures } from '../fusion/field-features.ts'
import type { Metrics } from '../metrics.ts'
import type { MixtureStats } from '../mdn/batch-stats.ts'
import { distributionAt } from '../mdn/distribution.ts'
import type { Scorer, ScorerInputs } from '../scoring/scorer.ts'
import type { VectorSlabs } from '../scoring/vector-slabs.ts'
import { CtrError } from '../errors.ts'
import { ITEM_KEYS } from './predict-schema.ts'
import { fieldMask } from './predictions-json.ts'
import { type EmbeddingLookup, type ModalityInputs, type ResolvedModality, resolveHits } from './embedding-lookup.ts'
import { HeadReserve } from './head-reserve.ts'
import type { DegradeReason, InlineCompute } from './inline-compute.ts'
import type { MissPolicy, PredictBody, PredictItem, Prediction, Source } from './types.ts'

export type KeyFn = (modality: Modality, input: string) => string

export interface PredictDeps {
  readonly bundle: Bundle
  readonly store: EmbeddingLookup
  readonly queue: { enqueue(jobs: EmbedJob[]): Promise<number> }
  /** The `budget` policy's bounded inline work. */
  readonly inline: Pick<InlineCompute, 'run'>
  /** Head + statistics (+ JSON): on this thread or in scorer threads (WEB_CONCURRENCY). */
  readonly scorer: Scorer
  /** Shared memory of cached vectors: those in it are handed to a scorer thread by reference, not copied. */
  readonly slabs?: Pick<VectorSlabs, 'slabOf'>
  readonly stats: MixtureStats
  readonly fields: FieldFeatures
  readonly metrics: Pick<Metrics, 'requestStage' | 'sources' | 'degraded' | 'shed'>
  readonly keyOf: KeyFn
  /** BUDGET_MS, MISS_POLICY and the largest budget_ms a caller may ask for (MAX_BUDGET_MS). */
  readonly defaults: { readonly budgetMs: number; readonly missPolicy: MissPolicy; readonly maxBudgetMs: number }
  readonly log: { warn(o: object, m: string): void }
}

export interface PredictResult {
  model: { name: string; version: string }
  predictions: Prediction[]
  warnings: string[]
  timing_ms: Record<string, number>
}

/** What a scoring step returns besides its value: its own split of the time. */
interface Finished<T> { readonly value: T; readonly headMs: number; readonly statsMs: number }

interface Prepared {
  readonly image: ResolvedModality
  readonly text: ResolvedModality
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000
}

/** The request path: keys → tiered lookup → misses by policy → one head run → distributions. */
export class PredictService {
  private readonly reserve = new HeadReserve()
  private warmingUp = false

  constructor(private readonly d: PredictDeps) {}

  /**
   * Runs `fn` (the start-up warm-up's requests, src/predict/warm-up.ts) with the service quiet: its
   * requests queue no jobs, count in no request metric and teach the head reserve nothing.
   */
  async quietly<T>(fn: () => Promise<T>): Promise<T> {
    this.warmingUp = true
    try {
      return await fn()
    } finally {
      this.warmingUp = false
    }
  }

  /** True while the start-up warm-up runs (the /predict route leaves its answers out of the late count). */
  get quiet(): boolean {
    return this.warmingUp
  }

  /**
   * `budget_ms` counts from `startedAt` (the request's arrival). Each stage gets what is left after
   * the reserve for the head and statistics; what does not fit is degraded (L2 skipped, OOV), and only a request whose budget is already spent on arrival here is refused (503).
   */
  async predict(body: PredictBody, startedAt: number): Promise<PredictResult> {
    const r = await this.run(body, startedAt, async (n, fill, p) => {
      const s = await this.d.scorer.score(n, fill)
      const t = performance.now()
      const predictions: Prediction[] = body.items.map((it, i) => ({
        id: it.id,
        ctr: distributionAt(this.d.stats, s.rows, s.pi, s.mu, s.sigma, i),
        sources: { image: p.image.sources[i] as Source, text: p.text.sources[i] as Source },
      }))
      return { value: predictions, headMs: s.headMs, statsMs: s.statsMs + performance.now() - t }
    })
    return { model: r.model, predictions: r.value, warnings: r.warnings, timing_ms: r.timing_ms }
  }

  /**
   * The whole response as JSON, serialised where it was scored (the /predict route's hot path),
   * trimmed to `options.fields` (predict() always returns every member).
   */
  async predictJson(body: PredictBody, startedAt: number): Promise<Buffer> {
    const r = await this.run(body, startedAt, async (n, fill, p) => {
      const meta = { ids: body.items.map((it) => it.id), image: p.image.sources, text: p.text.sources, fields: fieldMask(body.options?.fields) }
      const s = await this.d.scorer.scoreJson(n, fill, meta)
      return { value: s.json, headMs: s.headMs, statsMs: s.statsMs }
    })
    const head = `{"model":${JSON.stringify(r.model)},"predictions":`
    const tail = `,"warnings":${JSON.stringify(r.warnings)},"timing_ms":${JSON.stringify(r.timing_ms)}}`
    return Buffer.concat([Buffer.from(head), r.value, Buffer.from(tail)])
  }

  private async run<T>(
    body: PredictBody, startedAt: number,
    finish: (n: number, fill: (x: ScorerInputs) => void, p: Prepared) => Promise<Finished<T>>,
  ): Promise<Omit<PredictResult, 'predictions'> & { value: T }> {
    const t0 = performance.now()
    const t0Wall = Date.now()
    const quiet = this.warmingUp
    const budget = this.budgetOf(body)
    const deadline = startedAt + budget
    const policy = body.options?.miss_policy ?? this.d.defaults.missPolicy
    const items = body.items
    const warnings = new Set<string>()
    const degraded = new Set<DegradeReason>()
    const reserve = this.reserve.reserveMs(items.length)
    const stagesEnd = deadline - reserve
    // Less than the reserve left still gets an answer (L1 only, no inline work, no enqueue): it is
    // likely in time, as the reserve is a tail estimate. Nothing left at all cannot be answered in time.
    if (t0Wall >= deadline) throw new CtrError('BUDGET_SPENT', [String(budget), '0'])
    // Scorer threads busier than the request thread: shed before any work rather than queue past
    // the budget (event-loop delay, which load shedding watches, does not show this queue).
    if (Date.now() + this.d.scorer.backlogMs() >= deadline) {
      if (!quiet) this.d.metrics.shed.inc({ reason: 'scorer_backlog' })
      throw new CtrError('OVERLOADED', [])
    }

    const { mods, keys, at } = this.keysOf(items)
    // A lookup with no time left is L1 only (the L2 read resolves at its deadline at once).
    if (keys.length > 0 && stagesEnd <= Date.now()) degraded.add('lookup-skipped')
    const hits = keys.length > 0 ? await this.d.store.lookup(keys, stagesEnd, quiet ? { count: false } : {}) : []
    const t1 = performance.now()
    const resolved = at.map((a) => resolveHits(a, hits))
    if (policy === 'budget') for (const r of await this.d.inline.run(mods, resolved, stagesEnd)) degraded.add(r)
    const t2 = performance.now()
    const [image, text] = resolved as [ResolvedModality, ResolvedModality]
    // Fields are checked while the head's inputs are filled: a 400 there queues no jobs.
    const done = await finish(items.length, (x) => this.assemble(x, body, image, text, warnings), { image, text })
    // Never skipped, even late: offering jobs costs well under a millisecond (the Redis queue's
    // call is not awaited), and a skipped miss stays OOV until it is asked for again; under a cold
    // burst that is every item (bench scenario 9 lost 97% of its jobs that way).
    if (!quiet) mods.forEach((m, i) => this.enqueueMisses(m, resolved[i] as ResolvedModality))
    const t4 = performance.now()
    if (!quiet) {
      this.reserve.observe(items.length, t4 - t2)
      this.countSources(image.sources, 'image')
      this.countSources(text.sources, 'text')
      for (const reason of degraded) this.d.metrics.degraded.inc({ reason })
    }
    // Late answers are counted by the /predict route once the response is written.
    // head = assembly + the head's run (+ waiting for a scorer thread); stats = statistics + JSON.
    // intake = arrival (onRequest) → scoring start: body read, JSON parse, validation, and any wait
    // for the event loop in between (whole milliseconds: the arrival is a Date.now()).
    const timing = { total: t4 - t0, lookup: t1 - t0, compute: t2 - t1, head: t4 - t2 - done.statsMs, stats: done.statsMs, intake: t0Wall - startedAt }
    if (!quiet) for (const [stage, ms] of Object.entries(timing)) this.d.metrics.requestStage.observe({ stage }, ms / 1000)
    const m = this.d.bundle.manifest
    return {
      model: { name: m.name, version: m.version },
      value: done.value,
      warnings: [...warnings],
      timing_ms: Object.fromEntries(Object.entries(timing).map(([k, v]) => [k, round3(v)])),
    }
  }

  /**
   * Cache keys of both modalities in one pass, each distinct key once (one lookup, one Redis round
   * trip), and for every item the index of its key in `keys` (−1: no input for that modality).
   */
  private keysOf(items: readonly PredictItem[]): { mods: ModalityInputs[]; keys: string[]; at: Int32Array[] } {
    const n = items.length
    const keys: string[] = []
    const index = new Map<string, number>()
    const mods = (['image', 'text'] as const).map((modality) => {
      const inputs = new Array<string | undefined>(n)
      const modKeys = new Array<string | undefined>(n)
      const at = new Int32Array(n)
      for (let i = 0; i < n; i++) {
        const it = items[i] as PredictItem
        const v = modality === 'image' ? it.image_url : it.title
        // Whitespace-only titles tokenize to nothing: absent, like a missing title.
        if (v === undefined || v.trim().length === 0) { at[i] = -1; continue }
        const key = this.d.keyOf(modality, v)
        let j = index.get(key)
        if (j === undefined) { j = keys.length; keys.push(key); index.set(key, j) }
        inputs[i] = v
        modKeys[i] = key
        at[i] = j
      }
      return { mod: { modality, inputs, keys: modKeys }, at }
    })
    return { mods: mods.map((m) => m.mod), keys, at: mods.map((m) => m.at) }
  }

  private budgetOf(body: PredictBody): number {
    const budget = body.options?.budget_ms ?? this.d.defaults.budgetMs
    if (!Number.isFinite(budget)) throw new CtrError('BAD_FIELD', ['body/options/budget_ms', 'must be a finite number'])
    const max = this.d.defaults.maxBudgetMs
    if (budget > max) throw new CtrError('BAD_FIELD', ['body/options/budget_ms', `must be at most ${max} (this server's MAX_BUDGET_MS)`])
    return budget
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
  private assemble(x: ScorerInputs, body: PredictBody, image: ResolvedModality, text: ResolvedModality, warnings: Set<string>): void {
    const b = this.d.bundle
    const di = b.oov.image.length
    const dt = b.oov.text.length
    const df = b.fieldsDim
    const n = body.items.length
    const ctxRow = new Float32Array(df)
    this.d.fields.fill(ctxRow, 0, 'context', body.context, 'body/context', warnings)
    body.items.forEach((it, i) => {
      const iv = image.vectors[i]
      this.putVector(x.image, i * di, iv ?? b.oov.image, x.refs, 2 * i)
      x.imageOov[i] = iv ? 0 : 1
      const tv = text.vectors[i]
      this.putVector(x.text, i * dt, tv ?? b.oov.text, x.refs, 2 * (n + i))
      x.textOov[i] = tv ? 0 : 1
      x.fields.set(ctxRow, i * df)
      this.d.fields.fill(x.fields, i * df, 'item', it, 'body/items', warnings, i)
      for (const k in it) if (!ITEM_KEYS.has(k)) warnings.add(`body/items/*/${k}: unknown property, ignored`)
    })
  }

  /** A vector in shared memory goes by reference (refs[r], refs[r + 1]); any other is copied into `out`. */
  private putVector(out: Float32Array, at: number, v: Float32Array, refs: Int32Array | undefined, r: number): void {
    const slab = refs && this.d.slabs ? this.d.slabs.slabOf(v) : -1
    if (slab < 0 || !refs) { out.set(v, at); return }
    refs[r] = slab
    refs[r + 1] = v.byteOffset / Float32Array.BYTES_PER_ELEMENT
  }

  private countSources(sources: readonly Source[], modality: Modality): void {
    const counts = new Map<Source, number>()
    for (const s of sources) counts.set(s, (counts.get(s) ?? 0) + 1)
    for (const [source, c] of counts) this.d.metrics.sources.inc({ modality, source }, c)
  }
}
