// Runs one encoder (image CNN or text LSTM) in a worker thread: onnxruntime-node's run() blocks
// the thread it runs on, so encoders never share the event loop that answers requests.
import { type Worker, parentPort, workerData } from 'node:worker_threads'
import { createSession, float32, int64, releaseSession, runFloat32 } from '../onnx/ort-backend.ts'
import type { EncoderControl, EncoderRequest, EncoderResponse, EncoderWorkerData } from './encoder-protocol.ts'
import { loadTokenizer, type TitleTokenizer } from '../modalities/text/tokenizer.ts'
import type { ImageLoading, LoaderReply, LoaderRequest } from './image-loader-protocol.ts'
import { lowerThisThread } from '../util/thread-priority.ts'
import { startWorker } from '../workers/worker-entry.ts'

const data = workerData as EncoderWorkerData
const port = parentPort
if (!port) throw new Error('encoder-worker must run in a worker thread')

// Lowered before the session exists, so the threads it creates (ORT, the image loader) inherit
// the priority: the request path keeps the cores it needs.
const priorityWarning = lowerThisThread(data.nice ?? 0)

const session = await createSession(data.modelPath, { threads: data.intraOpThreads })
const output = { embeddings: data.outputName }
const tokenizer: TitleTokenizer | undefined = data.kind === 'text'
  ? await loadTokenizer(data.tokenizerDir ?? '', data.maxLength ?? 32)
  : undefined

async function runImage(n: number, tensor: Float32Array): Promise<Float32Array> {
  const [c, h, w] = data.imageShape ?? [3, 0, 0]
  const out = await runFloat32(session, { [data.inputName]: float32(tensor, [n, c, h, w]) }, output, { embeddings: n * data.dim })
  return new Float32Array(out.embeddings)
}

async function runText(titles: readonly string[]): Promise<{ embeddings: Float32Array; inputIds: number[][] }> {
  if (!tokenizer) throw new Error('text worker without tokenizer')
  const ids = titles.map((t) => tokenizer.encode(t))
  const len = Math.max(1, ...ids.map((r) => r.length))
  const n = titles.length
  const inputIds = new BigInt64Array(n * len).fill(BigInt(data.padId ?? 0))
  const mask = new BigInt64Array(n * len)
  ids.forEach((row, i) => row.forEach((id, j) => { inputIds[i * len + j] = BigInt(id); mask[i * len + j] = 1n }))
  const out = await runFloat32(session, {
    [data.inputName]: int64(inputIds, [n, len]),
    [data.maskName ?? 'attention_mask']: int64(mask, [n, len]),
  }, output, { embeddings: n * data.dim })
  return { embeddings: new Float32Array(out.embeddings), inputIds: ids }
}

// URL jobs are fetched, decoded and normalised off the request thread, and off this one too: in a
// loader thread of this worker (image-loader-worker.ts), so loading overlaps the encoder runs. The
// loader inherits this thread's priority. A loader that dies takes this worker with it: the pool
// replaces both, and the calls they held fail (the queue retries them).
let active = 0
let closing = false
const started = data.imageLoading ? startLoader(data.imageLoading) : undefined
const loader = started?.worker
const loads = new Map<number, (r: LoaderReply) => void>()
let nextLoad = 1

function startLoader(loading: ImageLoading): { worker: Worker; ready: Promise<void> } {
  const w = startWorker(new URL('./image-loader-worker.ts', import.meta.url), { loading, nice: data.nice ?? 0 })
  let started: () => void = () => undefined
  const ready = new Promise<void>((resolve) => { started = resolve })
  w.on('message', (r: LoaderReply | { ready: true }) => {
    if (!('id' in r)) { started(); return }
    const resolve = loads.get(r.id)
    loads.delete(r.id)
    resolve?.(r)
  })
  w.once('error', (err) => { if (!closing) throw new Error(`image loader thread failed: ${String(err)}`) })
  w.once('exit', (code) => { if (!closing) throw new Error(`image loader thread exited (code ${code})`) })
  return { worker: w, ready }
}

async function runImageUrls(urls: readonly string[], deadline: number) {
  if (!loader) throw new Error('image worker started without imageLoading options')
  const id = nextLoad++
  const r = await new Promise<LoaderReply>((resolve) => {
    loads.set(id, resolve)
    loader.postMessage({ id, urls, deadline } satisfies LoaderRequest)
  })
  // Whoever asked has stopped waiting: drop the tensors instead of spending the encoder on them.
  if (r.embedded.length > 0 && Date.now() >= deadline) {
    const late = r.embedded.map((index) => ({ index, message: 'deadline passed before encoding', permanent: false, reason: 'deadline' }))
    return { embeddings: new Float32Array(0), embedded: [], failures: [...r.failures, ...late], fetchReasons: r.fetchReasons }
  }
  const embeddings = r.embedded.length > 0 ? await runImage(r.embedded.length, r.batch) : new Float32Array(0)
  return { embeddings, embedded: r.embedded, failures: r.failures, fetchReasons: r.fetchReasons }
}

async function closeLoader(): Promise<void> {
  if (!loader) return
  const exited = new Promise<void>((r) => loader.once('exit', () => r()))
  loader.postMessage({ kind: 'close' })
  await exited
}

/** Releases what the thread holds once its runs end; releasing a session mid-run would crash it. */
async function closeWorker(): Promise<void> {
  closing = true
  while (active > 0) await new Promise((r) => setTimeout(r, 10))
  await Promise.allSettled([releaseSession(session), closeLoader()])
  process.exit(0) // in a worker thread this ends the thread only
}

port.on('message', (req: EncoderRequest | EncoderControl) => {
  if (req.kind === 'close') {
    void closeWorker()
    return
  }
  if (closing) {
    port.postMessage({ id: req.id, ok: false, error: 'encoder worker is closing' } satisfies EncoderResponse)
    return
  }
  active++
  const done = (res: EncoderResponse): void => {
    active--
    if (res.ok) port.postMessage(res, [res.embeddings.buffer as ArrayBuffer])
    else port.postMessage(res)
  }
  const work = req.kind === 'image'
    ? runImage(req.n, req.tensor).then((embeddings) => ({ embeddings }))
    : req.kind === 'image-urls' ? runImageUrls(req.urls, req.deadline) : runText(req.titles)
  work.then(
    (r) => done({ id: req.id, ok: true, ...r }),
    (err: unknown) => done({ id: req.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
  )
})
// Ready once the loader is too: a call sent earlier would wait for its start-up (seconds under tsx).
await started?.ready
port.postMessage({ ready: true, warning: priorityWarning })
