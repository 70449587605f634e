import type { Manifest } from '../bundle/manifest.ts'
import { type Source, SOURCES } from '../predict/types.ts'

// Messages between the request thread and a scorer thread. Input buffers travel by transfer (no
// copy) and come back with the answer, to be reused by a later request.

export interface ScorerWorkerData {
  readonly dir: string
  readonly manifest: Manifest
  readonly fieldsDim: number
  readonly intraOpThreads: number
  /** The shared slabs cached vectors live in (vector-slabs.ts), indexed as in ScorerInputs.refs. */
  readonly slabs: readonly SharedArrayBuffer[]
  /** Image slots carry the head's projection of their vector (image-projections.ts): score through the split head. */
  readonly imageProjections: boolean
  /** The bundle's OOV image vector (its projection is computed once, at start). */
  readonly oovImage: Float32Array
}

export interface InputSet {
  readonly capacity: number
  readonly image: Float32Array
  readonly imageOov: Float32Array
  readonly text: Float32Array
  readonly textOov: Float32Array
  readonly fields: Float32Array
  /** 4 × capacity: [slab, offset] of each row's image vector, then of each row's text vector. */
  readonly refs: Int32Array
}

export const SOURCE_CODES: readonly Source[] = SOURCES

export interface ScoreRequest {
  readonly id: number
  readonly n: number
  readonly inputs: InputSet
  /** JSON wanted: ids, the source codes of image (first n) and text (next n), the members to write (fieldMask). */
  readonly meta?: { readonly ids: readonly string[]; readonly sources: Uint8Array; readonly fields: number }
}

export type ScoreResponse =
  | { readonly id: number; readonly ok: true; readonly inputs: InputSet; readonly headMs: number; readonly statsMs: number
      /** Image rows projected for this call (split head): rows whose slot had no projection yet, or not in a slab. */
      readonly projected: number
      readonly json?: Uint8Array; readonly rows?: Float64Array; readonly pi?: Float32Array; readonly mu?: Float32Array; readonly sigma?: Float32Array }
  | { readonly id: number; readonly ok: false; readonly inputs: InputSet; readonly error: string }

/** One set of head inputs for up to `capacity` rows, all views of one buffer: one transfer per message. */
export function allocateInputs(bundle: { readonly manifest: Manifest; readonly fieldsDim: number }, capacity: number): InputSet {
  const sizes = [bundle.manifest.oov.image.dim, 1, bundle.manifest.oov.text.dim, 1, bundle.fieldsDim].map((d) => d * capacity)
  const floats = sizes.reduce((a, b) => a + b, 0)
  const buffer = new ArrayBuffer((floats + 4 * capacity) * Float32Array.BYTES_PER_ELEMENT)
  let offset = 0
  const [image, imageOov, text, textOov, fields] = sizes.map((len) => {
    const view = new Float32Array(buffer, offset * Float32Array.BYTES_PER_ELEMENT, len)
    offset += len
    return view
  }) as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array]
  const refs = new Int32Array(buffer, floats * Float32Array.BYTES_PER_ELEMENT, 4 * capacity)
  return { capacity, image, imageOov, text, textOov, fields, refs }
}

export function inputBuffers(s: InputSet): ArrayBuffer[] {
  return [s.image.buffer as ArrayBuffer]
}
