import { Worker } from 'node:worker_threads'
import type { EncoderControl, EncoderRequest, EncoderResponse, EncoderWorkerData } from './encoder-protocol.ts'

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
  /** Undefined while a replacement waits for its back-off delay. */
  worker: Worker | undefined
  ready: Promise<void>
  /** Set once the worker said it is ready: a death before that is a failed start. */
  started: boolean
  pending: Map<number, Pending>
}

const BOOTSTRAP_URL = new URL('./worker-bootstrap.mjs', import.meta.url)
const ENTRY = new URL('./encoder-worker.ts', import.meta.url).href

/** Delay before restarting a worker after `failures` consecutive failed starts (0: it had started). */
export function respawnDelayMs(failures: number): number {
  return failures <= 0 ? 0 : Math.min(30_000, 100 * 2 ** (failures - 1))
}

/** How long close() lets a worker release its session and exit before terminating it. */
const CLOSE_GRACE_MS = 5_000

/**
 * A fixed number of worker threads running one encoder. A worker that dies is replaced and the
 * calls it held fail (the queue retries them); a worker that dies before it is ready is replaced
 * after an exponential back-off (100 ms … 30 s), not in a loop. Calls go to the worker with the
 * fewest in flight. close() asks each worker to release its ONNX session and exit: a session left
 * to process exit can abort the process (SIGABRT) in onnxruntime's exit-time clean-up.
 */
export class EncoderPool {
  private readonly slots: Slot[] = []
  private nextId = 1
  private closed = false
  private failedStarts = 0
  private readonly delays = new Set<() => void>()
  restarts = 0

  constructor(private readonly data: EncoderWorkerData, size: number, private readonly log?: { warn(o: object, m: string): void }) {
    for (let i = 0; i < size; i++) this.slots.push(this.spawn(0))
  }

  get kind(): 'image' | 'text' { return this.data.kind }

  ready(): Promise<void> {
    return Promise.all(this.slots.map((s) => s.ready)).then(() => undefined)
  }

  private spawn(delayMs: number): Slot {
    const slot: Slot = { worker: undefined, pending: new Map(), ready: Promise.resolve(), started: false }
    const wait = delayMs > 0 ? this.delay(delayMs) : Promise.resolve()
    slot.ready = wait.then(() => this.start(slot))
    slot.ready.catch(() => undefined)
    return slot
  }

  /** A back-off wait that close() cuts short (the start after it then sees the pool closed). */
  private delay(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => { clearTimeout(timer); this.delays.delete(done); resolve() }
      const timer = setTimeout(done, ms)
      this.delays.add(done)
    })
  }

  private start(slot: Slot): Promise<void> {
    if (this.closed) return Promise.reject(new Error('encoder pool is closed'))
    const worker = new Worker(BOOTSTRAP_URL, { workerData: { ...this.data, entry: ENTRY } })
    slot.worker = worker
    const ready = new Promise<void>((resolve, reject) => {
      const onMsg = (m: { ready?: boolean; warning?: string }): void => {
        if (!m.ready) return
        worker.off('message', onMsg)
        slot.started = true
        this.failedStarts = 0
        if (m.warning) this.log?.warn({ kind: this.data.kind }, m.warning)
        resolve()
      }
      worker.on('message', onMsg)
      worker.once('error', reject)
      worker.once('exit', (code) => reject(new Error(`${this.data.kind} encoder worker exited at start (code ${code})`)))
    })
    worker.on('message', (m: EncoderResponse | { ready: true }) => {
      if (!('id' in m)) return
      const p = slot.pending.get(m.id)
      if (!p) return
      slot.pending.delete(m.id)
      if (m.ok) p.resolve(m)
      else p.reject(new Error(`${this.data.kind} encoder: ${m.error}`))
    })
    let dead = false
    const onDeath = (err: unknown): void => {
      if (dead) return
      dead = true
      for (const p of slot.pending.values()) p.reject(new Error(`${this.data.kind} encoder worker died: ${String(err)}`))
      slot.pending.clear()
      if (this.closed) return
      const i = this.slots.indexOf(slot)
      if (i < 0) return
      if (!slot.started) this.failedStarts++
      const delayMs = respawnDelayMs(slot.started ? 0 : this.failedStarts)
      this.restarts++
      this.log?.warn({ err: String(err), kind: this.data.kind, started: slot.started, delayMs }, 'encoder worker died, replacing it')
      this.slots[i] = this.spawn(delayMs)
    }
    worker.once('error', onDeath)
    worker.once('exit', (code) => onDeath(new Error(`exit code ${code}`)))
    return ready
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
        () => target.worker?.postMessage(req, req.kind === 'image' ? [req.tensor.buffer as ArrayBuffer] : []),
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

  /** Each worker finishes its runs, releases its session and exits; one that does not within 5 s is terminated. */
  async close(): Promise<void> {
    this.closed = true
    for (const cut of [...this.delays]) cut()
    await Promise.all(this.slots.map(async ({ worker }) => {
      if (!worker || worker.threadId < 0) return // never started, or already gone
      const exited = new Promise<void>((r) => worker.once('exit', () => r()))
      const close: EncoderControl = { kind: 'close' }
      worker.postMessage(close)
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<'late'>((r) => { timer = setTimeout(() => r('late'), CLOSE_GRACE_MS) })
      if (await Promise.race([exited, late]) === 'late') await worker.terminate()
      clearTimeout(timer)
    }))
  }
}
