// Runs one encoder (image CNN or text LSTM) in a worker thread: onnxruntime-node's run() blocks
// the thread it runs on, so encoders never share the event loop that answers requests.
import { readlinkSync } from 'node:fs'
import { setPriority } from 'node:os'
import { parentPort, workerData } from 'node:worker_threads'
import * as ort from 'onnxruntime-node'
import type { EncoderRequest, EncoderResponse, EncoderWorkerData } from './encoder-protocol.ts'
import { loadTokenizer, type TitleTokenizer } from '../modalities/text/tokenizer.ts'

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

const session = await ort.InferenceSession.create(data.modelPath, {
  intraOpNumThreads: data.intraOpThreads,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
})
const tokenizer: TitleTokenizer | undefined = data.kind === 'text'
  ? await loadTokenizer(data.tokenizerDir ?? '', data.maxLength ?? 32)
  : undefined

async function runImage(n: number, tensor: Float32Array): Promise<Float32Array> {
  const [c, h, w] = data.imageShape ?? [3, 0, 0]
  const out = await session.run({ [data.inputName]: new ort.Tensor('float32', tensor, [n, c, h, w]) })
  return copyOut(out[data.outputName], n)
}

async function runText(titles: readonly string[]): Promise<{ embeddings: Float32Array; inputIds: number[][] }> {
  if (!tokenizer) throw new Error('text worker without tokenizer')
  const ids = titles.map((t) => tokenizer.encode(t))
  const len = Math.max(1, ...ids.map((r) => r.length))
  const n = titles.length
  const inputIds = new BigInt64Array(n * len).fill(BigInt(data.padId ?? 0))
  const mask = new BigInt64Array(n * len)
  ids.forEach((row, i) => row.forEach((id, j) => { inputIds[i * len + j] = BigInt(id); mask[i * len + j] = 1n }))
  const out = await session.run({
    [data.inputName]: new ort.Tensor('int64', inputIds, [n, len]),
    [data.maskName ?? 'attention_mask']: new ort.Tensor('int64', mask, [n, len]),
  })
  return { embeddings: copyOut(out[data.outputName], n), inputIds: ids }
}

function copyOut(t: ort.Tensor | undefined, n: number): Float32Array {
  if (!t || !(t.data instanceof Float32Array)) throw new Error(`encoder output ${data.outputName} missing or not float32`)
  if (t.data.length !== n * data.dim) throw new Error(`encoder output has ${t.data.length} values, expected ${n}x${data.dim}`)
  return new Float32Array(t.data)
}

port.on('message', (req: EncoderRequest) => {
  const done = (res: EncoderResponse): void => {
    if (res.ok) port.postMessage(res, [res.embeddings.buffer as ArrayBuffer])
    else port.postMessage(res)
  }
  const work = req.kind === 'image'
    ? runImage(req.n, req.tensor).then((embeddings) => ({ embeddings }))
    : runText(req.titles)
  work.then(
    (r) => done({ id: req.id, ok: true, ...r }),
    (err: unknown) => done({ id: req.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
  )
})
port.postMessage({ ready: true, warning: priorityWarning })
