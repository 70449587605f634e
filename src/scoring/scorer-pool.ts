import type { Worker } from 'node:worker_threads'
import type { HeadBundle } from '../fusion/head.ts'
import { ALL_FIELDS, type RowMeta } from '../predict/predictions-json.ts'
import type { Source } from '../predict/types.ts'
import type { Scored, ScoredJson, Scorer, ScorerInputs } from './scorer.ts'
import { CallCost } from './call-cost.ts'
import { WorkerSlots } from '../workers/worker-slots.ts'
import { startWorker } from '../workers/worker-entry.ts'
import { type InputSet, SOURCE_CODES, type ScoreRequest, type ScoreResponse, type ScorerWorkerData, allocateInputs, inputBuffers } from './scorer-protocol.ts'

/** The shared slabs cached vectors live in, and whether image slots carry a projection (image-projections.ts). */
export interface SharedSlabs {
  readonly buffers: readonly SharedArrayBuffer[]
  readonly imageProjections: boolean
  /** Told how many image rows each call projected (for /metrics). */
  readonly onProjected?: (rows: number) => void
}

/** What scorer threads need of a bundle. */
export type ScorerBundle = HeadBundle & { readonly oov: { readonly image: Float32Array } }

const ENTRY = new URL('./scorer-worker.ts', import.meta.url)
const SOURCE_INDEX = new Map(SOURCE_CODES.map((s, i) => [s, i]))

/**
 * Scorer threads (WEB_CONCURRENCY − 1 of them, life cycle in src/workers/worker-slots.ts): the request
 * thread fills a set of input buffers (from the cache's vectors and the fields), transfers it to the
 * least busy thread, and gets the predictions JSON back with the buffers for reuse. A thread that
 * dies fails its calls and is replaced; one that fails at start is retried with a back-off.
 */
export class ScorerPool implements Scorer {
  private readonly slots: WorkerSlots<ScoreRequest, ScoreResponse>
  private readonly free: InputSet[] = []
  private closed = false
  /** A call's time in a scorer thread (head + statistics + JSON): fixed part + part per row. */
  private readonly cost = new CallCost()
  /** Calls sent and not answered yet, and their rows, over every thread. */
  private queuedCalls = 0
  private queuedRows = 0
  /** Image rows projected by the scorer threads so far (split head): each cached image once, plus rows not in a slab. */
  projectedImages = 0
  private readonly onProjected: ((rows: number) => void) | undefined

  constructor(
    private readonly bundle: ScorerBundle, size: number, intraOpThreads: number, log?: { warn(o: object, m: string): void },
    slabs: SharedSlabs = { buffers: [], imageProjections: false },
  ) {
    this.onProjected = slabs.onProjected
    const data: ScorerWorkerData = {
      dir: bundle.dir, manifest: bundle.manifest, fieldsDim: bundle.fieldsDim, intraOpThreads,
      slabs: slabs.buffers, imageProjections: slabs.imageProjections, oovImage: bundle.oov.image,
    }
    this.slots = new WorkerSlots<ScoreRequest, ScoreResponse>({
      name: 'scorer thread', size, ...(log ? { log } : {}),
      create: () => startWorker(ENTRY, data),
      // Buffers come back with every reply, ok or not.
      onReply: (m) => this.release(m.inputs),
    })
  }

  get size(): number { return this.slots.size }

  /** Threads replaced so far. */
  get restarts(): number { return this.slots.restarts }

  ready(): Promise<void> {
    return this.slots.ready()
  }

  /**
   * What a call made now would wait before its thread starts on it. The request thread outpaces a
   * busy scorer thread (its share is the smaller), so an overload queues here, where event-loop
   * delay does not see it: the predict service refuses a request that would wait past its budget.
   * Counted in calls and rows, so a few 500-item requests weigh what they cost and so do many small ones.
   */
  backlogMs(): number {
    return this.queuedCalls === 0 ? 0 : this.cost.estimateMs(this.queuedCalls, this.queuedRows) / this.slots.size
  }

  /** The running scorer threads (tests kill one). */
  workers(): Worker[] {
    return this.slots.workers()
  }

  private acquire(n: number): InputSet {
    const i = this.free.findIndex((s) => s.capacity >= n)
    if (i >= 0) return this.free.splice(i, 1)[0] as InputSet
    return allocateInputs(this.bundle, Math.max(n, 128))
  }

  // Enough sets for the requests in flight at saturation (a profile at 4 per thread still showed 1 %
  // of the request thread allocating them); each holds 0.7 MB per 128 rows.
  private release(s: InputSet): void {
    if (this.free.length < 16 * this.slots.size) this.free.push(s)
  }

  private views(s: InputSet, n: number): ScorerInputs {
    const m = this.bundle.manifest
    return {
      n, image: s.image.subarray(0, n * m.oov.image.dim), imageOov: s.imageOov.subarray(0, n),
      text: s.text.subarray(0, n * m.oov.text.dim), textOov: s.textOov.subarray(0, n), fields: s.fields.subarray(0, n * this.bundle.fieldsDim),
      refs: s.refs.subarray(0, 4 * n),
    }
  }

  private run(n: number, fill: (x: ScorerInputs) => void, meta?: RowMeta): Promise<Extract<ScoreResponse, { ok: true }>> {
    if (this.closed) return Promise.reject(new Error('scorer thread pool is closed'))
    const inputs = this.acquire(n)
    try {
      // A reused set holds the refs of an earlier request: nothing is read from a slab unless `fill` says so.
      inputs.refs.fill(-1, 0, 4 * n)
      fill(this.views(inputs, n))
    } catch (err) {
      this.release(inputs)
      return Promise.reject(err)
    }
    const req = { n, inputs, ...(meta ? { meta: { ids: meta.ids, sources: sourceCodes(meta), fields: meta.fields ?? ALL_FIELDS } } : {}) }
    this.queuedCalls++
    this.queuedRows += n
    return this.slots.call(req, inputBuffers(inputs)).then(
      (r) => {
        this.queuedCalls--
        this.queuedRows -= n
        this.projectedImages += r.projected
        if (r.projected > 0) this.onProjected?.(r.projected)
        this.cost.observe(n, r.headMs + r.statsMs)
        return r
      },
      (err: unknown) => { this.queuedCalls--; this.queuedRows -= n; throw err },
    )
  }

  async score(n: number, fill: (x: ScorerInputs) => void): Promise<Scored> {
    const r = await this.run(n, fill)
    if (!r.rows || !r.pi || !r.mu || !r.sigma) throw new Error('scorer answered without rows')
    return { n, rows: r.rows, pi: r.pi, mu: r.mu, sigma: r.sigma, headMs: r.headMs, statsMs: r.statsMs }
  }

  async scoreJson(n: number, fill: (x: ScorerInputs) => void, meta: RowMeta): Promise<ScoredJson> {
    const r = await this.run(n, fill, meta)
    if (r.json === undefined) throw new Error('scorer answered without JSON')
    return { json: r.json, headMs: r.headMs, statsMs: r.statsMs }
  }

  async close(): Promise<void> {
    this.closed = true
    await this.slots.close()
  }
}

function sourceCodes(meta: RowMeta): Uint8Array {
  const n = meta.ids.length
  const codes = new Uint8Array(2 * n)
  for (let i = 0; i < n; i++) {
    codes[i] = SOURCE_INDEX.get(meta.image[i] as Source) ?? 0
    codes[n + i] = SOURCE_INDEX.get(meta.text[i] as Source) ?? 0
  }
  return codes
}
