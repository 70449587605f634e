import { join } from 'node:path'
import { type Session, createSession, float32, releaseSession, runFloat32 } from '../onnx/ort-backend.ts'
import { type HeadBundle, type HeadInputs, type HeadOutputs, runHeadGraph } from './head.ts'

// The head in two graphs (manifest head.image_projection; training/head_split.py): the image
// tower's first dense layer alone (`project`), and the rest of the head from that layer's output
// (`run`). Scorer threads keep each cached image's projection beside its vector
// (src/scoring/image-projections.ts), so a request multiplies 64 values per image instead of 1280:
// the head's run on 100 rows took 0.26 against 0.45 ms on this machine.

/** The head's inputs with each row's image replaced by its projection (n × dim). */
export type ProjectedInputs = Omit<HeadInputs, 'image'> & { readonly imageProjection: Float32Array }

type Spec = NonNullable<HeadBundle['manifest']['head']['image_projection']>

export class SplitHead {
  /** Values per projected image. */
  readonly dim: number

  private constructor(
    private readonly projector: Session, private readonly rest: Session, private readonly bundle: HeadBundle, private readonly spec: Spec,
  ) {
    this.dim = spec.dim
  }

  /** The split of this bundle's head, or undefined when its manifest has none. */
  static async load(bundle: HeadBundle, intraOpThreads: number): Promise<SplitHead | undefined> {
    const spec = bundle.manifest.head.image_projection
    if (!spec) return undefined
    const projector = await createSession(join(bundle.dir, spec.file), { threads: intraOpThreads })
    const rest = await createSession(join(bundle.dir, spec.rest.file), { threads: intraOpThreads })
    return new SplitHead(projector, rest, bundle, spec)
  }

  /** Projections of m image vectors (m × image dim) as a new array (m × dim). */
  async project(images: Float32Array, m: number): Promise<Float32Array> {
    const man = this.bundle.manifest
    const out = await runFloat32(this.projector, { [man.head.inputs.image]: float32(images, [m, man.oov.image.dim]) }, { p: this.spec.output }, { p: m * this.dim })
    return out.p.slice()
  }

  async run(x: ProjectedInputs): Promise<HeadOutputs> {
    return runHeadGraph(this.rest, this.bundle, { [this.spec.rest.input]: float32(x.imageProjection, [x.n, this.dim]) }, x)
  }

  async close(): Promise<void> {
    await releaseSession(this.projector)
    await releaseSession(this.rest)
  }
}
