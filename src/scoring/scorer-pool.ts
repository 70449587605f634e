import { Worker } from 'node:worker_threads'
import type { HeadBundle, HeadInputs } from '../fusion/head.ts'
import type { RowMeta } from '../predict/predictions-json.ts'
import type { Source } from '../predict/types.ts'
import type { Scored, ScoredJson, Scorer } from './scorer.ts'
import { type InputSet, SOURCE_CODES, type ScoreRequest, type ScoreResponse, type ScorerWorkerData, allocateInputs, inputBuffers } from './scorer-protocol.ts'

const BOOTSTRAP_URL = new URL('../embedding/worker-bootstrap.mjs', import.meta.url)
const ENTRY = new URL('./scorer-worker.ts', import.meta.url).href
const SOURCE_INDEX = new Map(SOURCE_CODES.map((s, i) => [s, i]))

type Pending = { resolve: (r: Extract<ScoreResponse, { ok: true }>) => void; reject: (e: Error) => void }
interface Slot { worker: Worker; ready: Promise<void>; pending: Map<number, Pending> }

/**
 * Scorer threads (WEB_CONCURRENCY − 1 of them): the request thread fills a set of input buffers
 * (from the cache's vectors and the fields), transfers it to the least busy thread, and gets the
 * predictions JSON back with the buffers for reuse. A thread that dies fails its calls and is replaced.
 */
export class ScorerPool implements Scorer {
  private readonly slots: Slot[] = []
  private readonly free: InputSet[] = []
  private nextId = 1
  private closed = false
  restarts = 0

  constructor(private readonly bundle: HeadBundle, size: number, private readonly intraOpThreads: number, private readonly log?: { warn(o: object, m: string): void }) {
    for (let i = 0; i < size; i++) this.slots.push(this.spawn())
  }

  get size(): number { return this.slots.length }

  ready(): Promise<void> {
    return Promise.all(this.slots.map((s) => s.ready)).then(() => undefined)
  }

  private spawn(): Slot {
    const data: ScorerWorkerData = { dir: this.bundle.dir, manifest: this.bundle.manifest, fieldsDim: this.bundle.fieldsDim, intraOpThreads: this.intraOpThreads }
    const worker = new Worker(BOOTSTRAP_URL, { workerData: { ...data, entry: ENTRY } })
    const slot: Slot = { worker, pending: new Map(), ready: Promise.resolve() }
    slot.ready = new Promise<void>((resolve, reject) => {
      const onMsg = (m: { ready?: boolean }): void => { if (m.ready) { worker.off('message', onMsg); resolve() } }
      worker.on('message', onMsg)
      worker.once('error', reject)
    })
    slot.ready.catch(() => undefined)
    worker.on('message', (m: ScoreResponse | { ready: true }) => {
      if (!('id' in m)) return
      const p = slot.pending.get(m.id)
      if (!p) return
      slot.pending.delete(m.id)
      this.release(m.inputs)
      if (m.ok) p.resolve(m)
      else p.reject(new Error(`scorer: ${m.error}`))
    })
    const onDeath = (err: unknown): void => {
      for (const p of slot.pending.values()) p.reject(new Error(`scorer thread died: ${String(err)}`))
      slot.pending.clear()
      if (this.closed) return
      const i = this.slots.indexOf(slot)
      if (i >= 0) {
        this.restarts++
        this.log?.warn({ err: String(err) }, 'scorer thread died, replacing it')
        this.slots[i] = this.spawn()
      }
    }
    worker.once('error', onDeath)
    worker.once('exit', (code) => onDeath(new Error(`exit code ${code}`)))
    return slot
  }

  private acquire(n: number): InputSet {
    const i = this.free.findIndex((s) => s.capacity >= n)
    if (i >= 0) return this.free.splice(i, 1)[0] as InputSet
    return allocateInputs(this.bundle, Math.max(n, 128))
  }

  // Enough sets for the requests in flight at saturation (a profile at 4 per thread still showed 1 %
  // of the request thread allocating them); each holds 0.7 MB per 128 rows.
  private release(s: InputSet): void {
    if (this.free.length < 16 * this.slots.length) this.free.push(s)
  }

  private views(s: InputSet, n: number): HeadInputs {
    const m = this.bundle.manifest
    return {
      n, image: s.image.subarray(0, n * m.oov.image.dim), imageOov: s.imageOov.subarray(0, n),
      text: s.text.subarray(0, n * m.oov.text.dim), textOov: s.textOov.subarray(0, n), fields: s.fields.subarray(0, n * this.bundle.fieldsDim),
    }
  }

  private run(n: number, fill: (x: HeadInputs) => void, meta?: RowMeta): Promise<Extract<ScoreResponse, { ok: true }>> {
    if (this.closed) return Promise.reject(new Error('scorer pool is closed'))
    const inputs = this.acquire(n)
    try {
      fill(this.views(inputs, n))
    } catch (err) {
      this.release(inputs)
      return Promise.reject(err)
    }
    let slot = this.slots[0] as Slot
    for (const s of this.slots) if (s.pending.size < slot.pending.size) slot = s
    const id = this.nextId++
    const req: ScoreRequest = { id, n, inputs, ...(meta ? { meta: { ids: meta.ids, sources: sourceCodes(meta) } } : {}) }
    const target = slot
    return new Promise((resolve, reject) => {
      target.pending.set(id, { resolve, reject })
      target.ready.then(
        () => target.worker.postMessage(req, inputBuffers(inputs)),
        (err: unknown) => { target.pending.delete(id); reject(err instanceof Error ? err : new Error(String(err))) },
      )
    })
  }

  async score(n: number, fill: (x: HeadInputs) => void): Promise<Scored> {
    const r = await this.run(n, fill)
    if (!r.rows || !r.pi || !r.mu || !r.sigma) throw new Error('scorer answered without rows')
    return { n, rows: r.rows, pi: r.pi, mu: r.mu, sigma: r.sigma, headMs: r.headMs, statsMs: r.statsMs }
  }

  async scoreJson(n: number, fill: (x: HeadInputs) => void, meta: RowMeta): Promise<ScoredJson> {
    const r = await this.run(n, fill, meta)
    if (r.json === undefined) throw new Error('scorer answered without JSON')
    return { json: r.json, headMs: r.headMs, statsMs: r.statsMs }
  }

  async close(): Promise<void> {
    this.closed = true
    await Promise.all(this.slots.map((s) => s.worker.terminate()))
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
