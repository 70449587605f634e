import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import type { Bundle } from '../bundle/load-bundle.ts'

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
  private constructor(private readonly session: ort.InferenceSession, private readonly bundle: Bundle) {}

  static async load(bundle: Bundle, intraOpThreads: number): Promise<Head> {
    const session = await ort.InferenceSession.create(join(bundle.dir, bundle.manifest.head.file), {
      intraOpNumThreads: intraOpThreads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    })
    return new Head(session, bundle)
  }

  async run(x: HeadInputs): Promise<HeadOutputs> {
    const m = this.bundle.manifest
    const names = m.head.inputs
    const n = x.n
    const feeds: Record<string, ort.Tensor> = {
      [names.image]: new ort.Tensor('float32', x.image, [n, m.oov.image.dim]),
      [names.image_oov]: new ort.Tensor('float32', x.imageOov, [n, 1]),
      [names.text]: new ort.Tensor('float32', x.text, [n, m.oov.text.dim]),
      [names.text_oov]: new ort.Tensor('float32', x.textOov, [n, 1]),
      [names.fields]: new ort.Tensor('float32', x.fields, [n, this.bundle.fieldsDim]),
    }
    const out = await this.session.run(feeds)
    const get = (name: string): Float32Array => {
      const t = out[name]
      if (!t || !(t.data instanceof Float32Array)) throw new Error(`head output ${name} missing or not float32`)
      return t.data
    }
    return { k: m.mdn.k, pi: get(m.head.outputs.pi), mu: get(m.head.outputs.mu), sigma: get(m.head.outputs.sigma) }
  }

  async close(): Promise<void> {
    await this.session.release()
  }
}
