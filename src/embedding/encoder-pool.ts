import type { Worker } from 'node:worker_threads'
import { WorkerSlots } from '../workers/worker-slots.ts'
import { startWorker } from '../workers/worker-entry.ts'
import type { EncoderRequest, EncoderResponse, EncoderWorkerData } from './encoder-protocol.ts'

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

const ENTRY = new URL('./encoder-worker.ts', import.meta.url)

export { respawnDelayMs } from '../workers/worker-slots.ts'

/**
 * A fixed number of worker threads running one encoder (life cycle in src/workers/worker-slots.ts):
 * a worker that dies is replaced and the calls it held fail (the queue retries them); one that dies
 * before it is ready is replaced after an exponential back-off (100 ms … 30 s). close() asks each
 * worker to release its ONNX session and exit.
 */
export class EncoderPool {
  private readonly slots: WorkerSlots<EncoderRequest, EncoderResponse>

  constructor(private readonly data: EncoderWorkerData, size: number, log?: { warn(o: object, m: string): void }) {
    this.slots = new WorkerSlots({
      name: `${data.kind} encoder worker`, size, logFields: { kind: data.kind }, ...(log ? { log } : {}),
      create: () => startWorker(ENTRY, data),
    })
  }

  get kind(): 'image' | 'text' { return this.data.kind }

  /** Workers replaced so far. */
  get restarts(): number { return this.slots.restarts }

  ready(): Promise<void> {
    return this.slots.ready()
  }

  /** The running workers (tests kill one). */
  workers(): Worker[] {
    return this.slots.workers()
  }

  run(body: RequestBody): Promise<Extract<EncoderResponse, { ok: true }>> {
    return this.slots.call(body, body.kind === 'image' ? [body.tensor.buffer as ArrayBuffer] : [])
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
  close(): Promise<void> {
    return this.slots.close()
  }
}
