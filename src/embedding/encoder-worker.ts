// Runs one encoder (image CNN or text LSTM) in a worker thread: onnxruntime-node's run() blocks
// the thread it runs on, so encoders never share the event loop that answers requests.
import { readlinkSync } from 'node:fs'
import { setPriority } from 'node:os'
import { parentPort, workerData } from 'node:worker_threads'
import { createSession, float32, int64, runFloat32 } from '../onnx/ort-backend.ts'
import type { EncoderRequest, EncoderResponse, EncoderWorkerData } from './encoder-protocol.ts'
import { loadTokenizer, type TitleTokenizer } from '../modalities/text/tokenizer.ts'
import { CtrError } from '../errors.ts'
import { configureSharp, createImageFetcher, loadImageInput } from '../modalities/image/index.ts'
import { HostLimiter } from '../util/host-limiter.ts'

const data = workerData as EncoderWorkerData
const port = parentPort
if (!port) throw new Error('encoder-worker must run in a worker thread')

// On a small machine background embedding competes with the request thread for the same cores:
// lower this thread's priority (Linux: a thread id is a valid target of setpriority) before the
// session exists, so threads it creates inherit it. The request path then keeps its latency.
function lowerPriority(nice: number): string | undefined {
  if (nice <= 0) return undefined
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop())
    setPriority(tid, nice)
    return undefined
  } catch (err) {
    return `could not lower encoder thread priority: ${String(err)}`
  }
}
const priorityWarning = lowerPriority(data.nice ?? 0)

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

// URL jobs are fetched, decoded and normalised here too, not on the request thread: at a few
// hundred new images per second that work alone would saturate the event loop.
const loading = data.imageLoading
if (loading) configureSharp()
const fetcher = loading ? createImageFetcher(loading.fetch) : undefined
const hosts = new HostLimiter(loading?.hostConcurrency ?? 1)

function hostOf(url: string): string {
  try { return new URL(url).host } catch { return '' }
}

/** A short label for why an image failed; errors lose their class crossing the thread boundary. */
function reasonOf(err: unknown): string | undefined {
  const cause = err instanceof Error ? (err.cause as { reason?: unknown } | undefined) : undefined
  if (typeof cause?.reason === 'string') return cause.reason
  if (err instanceof CtrError && err.code === 'CTR_ERR_IMAGE_INVALID') return 'invalid-image'
  if (err instanceof CtrError && err.code === 'CTR_ERR_FETCH_REFUSED') return 'refused'
  return undefined
}

async function runImageUrls(urls: readonly string[], deadline: number) {
  if (!loading || !fetcher) throw new Error('image worker started without imageLoading options')
  const fetchReasons: string[] = []
  const metrics = { fetchFailures: { inc: (labels: { reason: string }) => { fetchReasons.push(labels.reason) } } }
  const loaded = await Promise.all(urls.map((url) => hosts.run(hostOf(url), () => loadImageInput(url, {
    deadline, spec: loading.spec, fetchOptions: loading.fetch, fetcher, metrics,
    preprocess: { limitInputPixels: loading.limitInputPixels },
  })).then((img) => ({ ok: true as const, tensor: img.tensor }), (err: unknown) => ({ ok: false as const, err }))))
  const embedded: number[] = []
  const failures: Array<{ index: number; message: string; permanent: boolean; reason?: string }> = []
  // Whoever asked has stopped waiting: drop the tensors instead of spending the encoder on them.
  const late = Date.now() >= deadline
  loaded.forEach((l, index) => {
    if (l.ok && late) failures.push({ index, message: 'deadline passed before encoding', permanent: false, reason: 'deadline' })
    else if (l.ok) embedded.push(index)
    else failures.push({ index, message: l.err instanceof Error ? l.err.message : String(l.err), permanent: l.err instanceof CtrError && l.err.permanent, reason: reasonOf(l.err) })
  })
  const per = 3 * loading.spec.height * loading.spec.width
  const batch = new Float32Array(embedded.length * per)
  embedded.forEach((index, j) => {
    const l = loaded[index]
    if (l?.ok) batch.set(l.tensor, j * per)
  })
  const embeddings = embedded.length > 0 ? await runImage(embedded.length, batch) : new Float32Array(0)
  return { embeddings, embedded, failures, fetchReasons }
}

port.on('message', (req: EncoderRequest) => {
  const done = (res: EncoderResponse): void => {
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
port.postMessage({ ready: true, warning: priorityWarning })
