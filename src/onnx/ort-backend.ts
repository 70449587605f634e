import * as ort from 'onnxruntime-node'

// The one place onnxruntime-node is used (as transformers.js keeps its backend behind one module):
// session options, tensors and output checks. The head and both encoder workers go through here.

export type Session = ort.InferenceSession
export type Feeds = Record<string, ort.Tensor>

export interface SessionOptions {
  /** Threads of one run (intra-op). The request thread's head uses 1: requests are the parallelism. */
  readonly threads: number
}

/** Load a model for sequential, fully optimised runs on the CPU. */
export async function createSession(path: string, opts: SessionOptions): Promise<Session> {
  try {
    return await ort.InferenceSession.create(path, {
      intraOpNumThreads: opts.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    })
  } catch (err) {
    throw new Error(`cannot load ONNX model ${path}: ${err instanceof Error ? err.message : String(err)} (check the bundle with \`ctrserve verify\`)`, { cause: err })
  }
}

export function float32(data: Float32Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims)
}

export function int64(data: BigInt64Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('int64', data, dims)
}

/**
 * Run the session and return the named float32 outputs, each checked to hold `counts[name]` values
 * when given. The arrays are onnxruntime's own (no copy); copy them to keep them past the next run.
 */
export async function runFloat32<K extends string>(
  session: Session, feeds: Feeds, outputs: Readonly<Record<K, string>>, counts: Partial<Readonly<Record<K, number>>> = {},
): Promise<Record<K, Float32Array>> {
  const out = await session.run(feeds)
  const result = {} as Record<K, Float32Array>
  for (const key of Object.keys(outputs) as K[]) {
    const name = outputs[key]
    const t = out[name]
    if (!t || !(t.data instanceof Float32Array)) throw new Error(`model output ${name} missing or not float32`)
    const expected = counts[key]
    if (expected !== undefined && t.data.length !== expected) throw new Error(`model output ${name} has ${t.data.length} values, expected ${expected}`)
    result[key] = t.data
  }
  return result
}

export async function releaseSession(session: Session): Promise<void> {
  await session.release()
}
