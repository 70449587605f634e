// Fetches, decodes and normalises image URLs for one image-encoder worker, in a thread of its own.
// onnxruntime-node's run() holds the encoder thread for the whole encoder call; when the loading
// shared that thread, every fetch response, sharp callback and tensor fill waited for the run in
// progress, and the encoder waited for the loading in turn (`ctrserve warm` reached 59 % of the
// raw encoder throughput). Here the next batches load while the encoder runs.
import { parentPort, workerData } from 'node:worker_threads'
import { CtrError } from '../errors.ts'
import { configureSharp, createImageFetcher, loadImagePixels, writeTensor } from '../modalities/image/index.ts'
import { HostLimiter } from '../util/host-limiter.ts'
import { hostOf } from './cost-model.ts'
import { failureReason } from './failure-reason.ts'
import { lowerThreadpool } from '../util/thread-priority.ts'
import type { ImageLoading, LoaderReply, LoaderRequest } from './image-loader-protocol.ts'

const port = parentPort
if (!port) throw new Error('image-loader-worker must run in a worker thread')
const { loading, nice } = workerData as { loading: ImageLoading; nice: number }
configureSharp()
// sharp decodes on libuv's threadpool, whose threads run at the priority of whoever started the
// pool: lower them with this thread (bench scenario 4: decoding competed with the request thread).
await lowerThreadpool(nice)
const fetcher = createImageFetcher(loading.fetch)
const hosts = new HostLimiter(loading.hostConcurrency)
const per = 3 * loading.spec.height * loading.spec.width

/** The URLs' tensors, concatenated (NCHW) in the order of `embedded`; why the others failed. */
async function load(req: LoaderRequest): Promise<LoaderReply> {
  const fetchReasons: string[] = []
  const metrics = { fetchFailures: { inc: (labels: { reason: string }) => { fetchReasons.push(labels.reason) } } }
  // Decoded pixels wait for the rest of the batch (a quarter of the float tensor's size: with
  // EMBED_CONCURRENCY batches loading at once, that is what the images in flight hold), and are
  // normalised straight into the batch once it is complete.
  const loaded = await Promise.all(req.urls.map((url) => hosts.run(hostOf(url), () => loadImagePixels(url, {
    deadline: req.deadline, spec: loading.spec, fetchOptions: loading.fetch, fetcher, metrics,
    preprocess: { limitInputPixels: loading.limitInputPixels },
  })).then((pixels) => ({ ok: true as const, pixels }), (err: unknown) => ({ ok: false as const, err }))))
  const embedded: number[] = []
  const failures: LoaderReply['failures'] = []
  loaded.forEach((l, index) => {
    if (l.ok) embedded.push(index)
    else failures.push({ index, message: l.err instanceof Error ? l.err.message : String(l.err), permanent: l.err instanceof CtrError && l.err.permanent, reason: failureReason(l.err) })
  })
  const batch = new Float32Array(embedded.length * per)
  embedded.forEach((index, j) => {
    const l = loaded[index]
    if (l?.ok) writeTensor(l.pixels, loading.spec, batch, j * per)
  })
  return { id: req.id, batch, embedded, failures, fetchReasons }
}

let active = 0

port.on('message', (req: LoaderRequest | { kind: 'close' }) => {
  if ('kind' in req) {
    void (async () => {
      while (active > 0) await new Promise((r) => setTimeout(r, 10))
      await fetcher.close().catch(() => undefined)
      process.exit(0) // in a worker thread this ends the thread only
    })()
    return
  }
  active++
  const everyUrlFailed = (err: unknown): LoaderReply => ({
    id: req.id, batch: new Float32Array(0), embedded: [], fetchReasons: [],
    failures: req.urls.map((_, index) => ({ index, message: err instanceof Error ? err.message : String(err), permanent: false })),
  })
  void load(req).catch(everyUrlFailed).then((reply) => {
    active--
    port.postMessage(reply, [reply.batch.buffer as ArrayBuffer])
  })
})
port.postMessage({ ready: true })
