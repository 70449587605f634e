import { join } from 'node:path'
import { type Feeds, type Session, createSession, float32, releaseSession, runFloat32 } from '../onnx/ort-backend.ts'
import type { Bundle } from '../bundle/load-bundle.ts'

/** What the head needs of a bundle (a scorer thread receives just this). */
export type HeadBundle = Pick<Bundle, 'dir' | 'manifest' | 'fieldsDim'>

export interface HeadInputs {
  readonly n: number
  readonly image: Float32Array
  readonly imageOov: Float32Array
  readonly text: Float32Array
  readonly textOov: Float32Array
  readonly fields: Float32Array
}

export interface HeadOutputs {
  readonly k: number
  readonly pi: Float32Array
  readonly mu: Float32Array
  readonly sigma: Float32Array
}

/** The fusion head (towers + MLP + MDN), small enough to run once per request on the main thread. */
export class Head {
  // Input buffers reused across requests: a 100-item request needs ~0.6 MB of inputs, and
  // allocating them per request drove most of the server's garbage collection. Runs that use
  // them are chained one after another (onnxruntime-node defers run() to a later tick).
  private buffers: { capacity: number; image: Float32Array; imageOov: Float32Array; text: Float32Array; textOov: Float32Array; fields: Float32Array } | undefined
  private chain: Promise<unknown> = Promise.resolve()

  private constructor(private readonly session: Session, private readonly bundle: HeadBundle) {}

  private inputs(n: number): HeadInputs {
    const m = this.bundle.manifest
    const di = m.oov.image.dim
    const dt = m.oov.text.dim
    const df = this.bundle.fieldsDim
    if (!this.buffers || this.buffers.capacity < n) {
      const capacity = Math.max(n, 2 * (this.buffers?.capacity ?? 0), 16)
      this.buffers = {
        capacity,
        image: new Float32Array(capacity * di), imageOov: new Float32Array(capacity),
        text: new Float32Array(capacity * dt), textOov: new Float32Array(capacity),
        fields: new Float32Array(capacity * df),
      }
    }
    const b = this.buffers
    return {
      n,
      image: b.image.subarray(0, n * di), imageOov: b.imageOov.subarray(0, n),
      text: b.text.subarray(0, n * dt), textOov: b.textOov.subarray(0, n),
      fields: b.fields.subarray(0, n * df),
    }
  }

  /**
   * Run the head on n rows written by `fill` into the shared input buffers. `fill` must write every
   * element of every input. Calls run one at a time; a `fill` that throws rejects only its call.
   */
  runWith(n: number, fill: (x: HeadInputs) => void): Promise<HeadOutputs> {
    const job = this.chain.then(() => {
      const x = this.inputs(n)
      fill(x)
      return this.run(x)
    })
    this.chain = job.catch(() => undefined)
    return job
  }

  static async load(bundle: HeadBundle, intraOpThreads: number): Promise<Head> {
    const session = await createSession(join(bundle.dir, bundle.manifest.head.file), { threads: intraOpThreads })
    return new Head(session, bundle)
  }

  async run(x: HeadInputs): Promise<HeadOutputs> {
    const m = this.bundle.manifest
    return runHeadGraph(this.session, this.bundle, { [m.head.inputs.image]: float32(x.image, [x.n, m.oov.image.dim]) }, x)
  }

  async close(): Promise<void> {
    await releaseSession(this.session)
  }
}

/**
 * Runs a graph that takes the head's inputs, its image input given as `image` (the whole head's
 * image vectors, or the split head's projections: split-head.ts), and gives the head's outputs.
 */
export async function runHeadGraph(session: Session, bundle: HeadBundle, image: Feeds, x: Omit<HeadInputs, 'image'>): Promise<HeadOutputs> {
  const m = bundle.manifest
  const names = m.head.inputs
  const n = x.n
  const k = m.mdn.k
  const out = await runFloat32(session, {
    ...image,
    [names.image_oov]: float32(x.imageOov, [n, 1]),
    [names.text]: float32(x.text, [n, m.oov.text.dim]),
    [names.text_oov]: float32(x.textOov, [n, 1]),
    [names.fields]: float32(x.fields, [n, bundle.fieldsDim]),
  }, m.head.outputs, { pi: n * k, mu: n * k, sigma: n * k })
  return { k, pi: out.pi, mu: out.mu, sigma: out.sigma }
}
