import { Worker } from 'node:worker_threads'
import type { EncoderRequest, EncoderResponse, EncoderWorkerData } from './encoder-protocol.ts'

type Pending = { resolve: (r: Extract<EncoderResponse, { ok: true }>) => void; reject: (e: Error) => void }
type RequestBody =
  | { kind: 'image'; n: number; tensor: Float32Array }
  | { kind: 'image-urls'; urls: readonly string[]; deadline: number }
  | { kind: 'text'; titles: readonly string[] }

export interface ImageUrlsResult {
  /** Embeddings of the URLs listed in `embedded`, in that order. */
  readonly embeddings: Float32Array
  readonly embedded: readonly number[]
  readonly failures: ReadonlyArray<{ readonly index: number; readonly message: string; readonly permanent: boolean; readonly reason?: string }>
  /** Reasons of failed fetches, for the fetch-failure metric. */
  readonly fetchReasons: readonly string[]
}

interface Slot {
  worker: Worker
  ready: Promise<void>
  pending: Map<number, Pending>
}

const BOOTSTRAP_URL = new URL('./worker-bootstrap.mjs', import.meta.url)
const ENTRY = new URL('./encoder-worker.ts', import.meta.url).href

/**
 * A fixed number of worker threads running one encoder. A worker that dies is replaced and the
 * calls it held fail (the queue retries them); calls go to the worker with the fewest in flight.
 */
export class EncoderPool {
  private readonly slots: Slot[] = []
  private nextId = 1
  private closed = false
  restarts = 0

  constructor(private readonly data: EncoderWorkerData, size: number, private readonly log?: { warn(o: object, m: string): void }) {
    for (let i = 0; i < size; i++) this.slots.push(this.spawn())
  }

  get kind(): 'image' | 'text' { return this.data.kind }

  ready(): Promise<void> {
    return Promise.all(this.slots.map((s) => s.ready)).then(() => undefined)
  }

  private spawn(): Slot {
    const worker = new Worker(BOOTSTRAP_URL, { workerData: { ...this.data, entry: ENTRY } })
    const slot: Slot = { worker, pending: new Map(), ready: Promise.resolve() }
    slot.ready = new Promise<void>((resolve, reject) => {
      const onMsg = (m: { ready?: boolean; warning?: string }): void => {
        if (!m.ready) return
        worker.off('message', onMsg)
        if (m.warning) this.log?.warn({ kind: this.data.kind }, m.warning)
        resolve()
      }
      worker.on('message', onMsg)
      worker.once('error', reject)
    })
    slot.ready.catch(() => undefined)
    worker.on('message', (m: EncoderResponse | { ready: true }) => {
      if (!('id' in m)) return
      const p = slot.pending.get(m.id)
      if (!p) return
      slot.pending.delete(m.id)
      if (m.ok) p.resolve(m)
      else p.reject(new Error(`${this.data.kind} encoder: ${m.error}`))
    })
    const onDeath = (err: unknown): void => {
      for (const p of slot.pending.values()) p.reject(new Error(`${this.data.kind} encoder worker died: ${String(err)}`))
      slot.pending.clear()
      if (this.closed) return
      const i = this.slots.indexOf(slot)
      if (i >= 0) {
        this.restarts++
        this.log?.warn({ err: String(err), kind: this.data.kind }, 'encoder worker died, replacing it')
        this.slots[i] = this.spawn()
      }
    }
    worker.once('error', onDeath)
    worker.once('exit', (code) => onDeath(new Error(`exit code ${code}`)))
    return slot
  }

  run(body: RequestBody): Promise<Extract<EncoderResponse, { ok: true }>> {
    if (this.closed) return Promise.reject(new Error('encoder pool is closed'))
    let slot = this.slots[0] as Slot
    for (const s of this.slots) if (s.pending.size < slot.pending.size) slot = s
    const id = this.nextId++
    const target = slot
    return new Promise((resolve, reject) => {
      target.pending.set(id, { resolve, reject })
      const req: EncoderRequest = { id, ...body }
      target.ready.then(
        () => target.worker.postMessage(req, req.kind === 'image' ? [req.tensor.buffer as ArrayBuffer] : []),
        (err: unknown) => { target.pending.delete(id); reject(err instanceof Error ? err : new Error(String(err))) },
      )
    })
  }

  /** Embed n preprocessed images (NCHW float32, concatenated); the tensor is transferred. */
  async embedImages(n: number, tensor: Float32Array): Promise<Float32Array> {
    return (await this.run({ kind: 'image', n, tensor })).embeddings
  }

  /** Fetch, decode, normalise and embed image URLs, all inside the worker (needs imageLoading). */
  async embedImageUrls(urls: readonly string[], deadline: number): Promise<ImageUrlsResult> {
    const r = await this.run({ kind: 'image-urls', urls, deadline })
    return { embeddings: r.embeddings, embedded: r.embedded ?? [], failures: r.failures ?? [], fetchReasons: r.fetchReasons ?? [] }
  }

  async embedTexts(titles: readonly string[]): Promise<{ embeddings: Float32Array; inputIds: number[][] }> {
    const r = await this.run({ kind: 'text', titles })
    return { embeddings: r.embeddings, inputIds: r.inputIds ?? [] }
  }

  async close(): Promise<void> {
    this.closed = true
    await Promise.all(this.slots.map((s) => s.worker.terminate()))
  }
}
