// A scorer thread: the head's run, the mixture statistics and the predictions JSON of one request
// at a time per message, off the thread that parses requests and writes responses (issue 11).
import { parentPort, workerData } from 'node:worker_threads'
import { Head, type HeadInputs, type HeadOutputs } from '../fusion/head.ts'
import { SplitHead } from '../fusion/split-head.ts'
import { ImageProjections } from './image-projections.ts'
import { mixtureStatsOf } from '../mdn/batch-stats.ts'
import { PredictionsJson } from '../predict/predictions-json.ts'
import { scoreInputs } from './scorer.ts'
import { SOURCE_CODES, type ScoreRequest, type ScoreResponse, type ScorerWorkerData, inputBuffers } from './scorer-protocol.ts'
import type { Source } from '../predict/types.ts'
import type { CloseMessage } from '../workers/worker-slots.ts'

const data = workerData as ScorerWorkerData
if (!parentPort) throw new Error('scorer-worker must run in a worker thread')
const port = parentPort

const stats = mixtureStatsOf(data.manifest)
const json = new PredictionsJson(stats)
const di = data.manifest.oov.image.dim
const dt = data.manifest.oov.text.dim

const slabs = data.slabs.map((b) => new Float32Array(b))
// With the head split (manifest head.image_projection) and shared slabs: images go through their
// cached projections (image-projections.ts), and the rest of the head runs on those.
const split = data.imageProjections ? await SplitHead.load(data, data.intraOpThreads) : undefined
if (data.imageProjections && !split) throw new Error('scorer: image slots carry projections but the bundle has no head.image_projection')
// The whole head only when not split (its session would sit unused).
const head = split ? undefined : await Head.load(data, data.intraOpThreads)
const projections = split
  ? new ImageProjections(data.slabs, di, split.dim, await split.project(data.oovImage, 1), (rows, m) => split.project(rows, m))
  : undefined

function views(req: ScoreRequest): HeadInputs {
  const { n, inputs: s } = req
  const x = {
    n, image: s.image.subarray(0, n * di), imageOov: s.imageOov.subarray(0, n),
    text: s.text.subarray(0, n * dt), textOov: s.textOov.subarray(0, n), fields: s.fields.subarray(0, n * data.fieldsDim),
  }
  if (!projections) gather(x.image, s.refs, 0, n, di)
  gather(x.text, s.refs, 2 * n, n, dt)
  return x
}

/** The head's outputs for a request's rows: through the cached image projections when split. */
async function runHead(x: HeadInputs, refs: Int32Array, counts: { projected: number }): Promise<HeadOutputs> {
  if (!split || !projections) return (head as Head).run(x)
  const imageProjection = new Float32Array(x.n * split.dim)
  counts.projected = await projections.fill(imageProjection, { n: x.n, image: x.image, imageOov: x.imageOov, refs })
  return split.run({ n: x.n, imageProjection, imageOov: x.imageOov, text: x.text, textOov: x.textOov, fields: x.fields })
}

/** Copies the rows the request thread left in shared memory (refs[at + 2i] ≥ 0) into `out`. */
function gather(out: Float32Array, refs: Int32Array, at: number, n: number, dim: number): void {
  for (let i = 0; i < n; i++) {
    const slab = refs[at + 2 * i] as number
    if (slab < 0) continue
    const offset = refs[at + 2 * i + 1] as number
    const src = slabs[slab]
    if (!src) throw new Error(`scorer: unknown vector slab ${slab}`)
    out.set(src.subarray(offset, offset + dim), i * dim)
  }
}

async function handle(req: ScoreRequest): Promise<ScoreResponse> {
  const counts = { projected: 0 }
  const s = await scoreInputs({ run: (x) => runHead(x, req.inputs.refs, counts) }, stats, views(req))
  const { projected } = counts
  if (!req.meta) return { id: req.id, ok: true, inputs: req.inputs, headMs: s.headMs, statsMs: s.statsMs, projected, rows: s.rows, pi: s.pi, mu: s.mu, sigma: s.sigma }
  const t = performance.now()
  const codes = req.meta.sources
  const n = req.n
  const image: Source[] = new Array<Source>(n)
  const text: Source[] = new Array<Source>(n)
  for (let i = 0; i < n; i++) {
    image[i] = SOURCE_CODES[codes[i] as number] as Source
    text[i] = SOURCE_CODES[codes[n + i] as number] as Source
  }
  const body = json.write(s, { ids: req.meta.ids, image, text, fields: req.meta.fields })
  return { id: req.id, ok: true, inputs: req.inputs, headMs: s.headMs, statsMs: s.statsMs + performance.now() - t, projected, json: body }
}

let active = 0

/** Releases the head's session once the runs in progress end (releasing it mid-run would crash). */
async function closeWorker(): Promise<void> {
  while (active > 0) await new Promise((r) => setTimeout(r, 10))
  await head?.close()
  await split?.close()
  process.exit(0) // in a worker thread this ends the thread only
}

async function serve(req: ScoreRequest): Promise<void> {
  try {
    const res = await handle(req)
    const transfer = inputBuffers(res.inputs)
    if (res.ok && res.rows) transfer.push(res.rows.buffer as ArrayBuffer)
    if (res.ok && res.json) transfer.push(res.json.buffer as ArrayBuffer)
    port.postMessage(res, transfer)
  } catch (err) {
    port.postMessage({ id: req.id, ok: false, inputs: req.inputs, error: err instanceof Error ? err.message : String(err) }, inputBuffers(req.inputs))
  } finally {
    active--
  }
}

// Calls are served one at a time, in arrival order. onnxruntime-node's run() is synchronous behind
// a setImmediate, so calls handled concurrently only interleave on this thread, and each one's
// measured head time then included the runs of every call that arrived with it: the pool's
// backlog estimate (time per row × rows queued) counted the queue twice and, in bench scenario 4's
// first second, shed requests a 30 ms backlog would have answered in time.
let tail: Promise<void> = Promise.resolve()

port.on('message', (req: ScoreRequest | CloseMessage) => {
  if ('kind' in req) {
    void closeWorker()
    return
  }
  active++
  tail = tail.then(() => serve(req))
})
port.postMessage({ ready: true })
