import type { SlotTail } from './vector-slabs.ts'

// Each cached image vector's projection by the head's first image layer (src/fusion/split-head.ts),
// kept in the vector's own slab slot, so scorer threads compute it once per cached image rather
// than once per request. A slot (vector-slabs.ts) for an image vector is
//
//   [vector: imageDim floats][generation][projection's generation][projection: dim floats]
//
// The request thread writes the generation when it adopts a vector; a scorer thread that finds the
// projection's generation equal to it copies the projection, otherwise it projects the vector (one
// batch per request for every such row) and writes the projection, then its generation (Atomics:
// whoever sees the generation sees the values). Two threads may project the same slot at once:
// both write the same values. A slot is reused only after the quarantine (60 s), when no request
// that named its old vector is still being scored.

/** The slot tail image vectors need for their projection (generation word added by VectorSlabs). */
export function projectionTail(imageDim: number, dim: number): SlotTail {
  return { length: imageDim, floats: 1 + dim }
}

/** Rows of one request as a scorer thread has them: refs[2i] ≥ 0 names row i's slab slot. */
export interface ImageRows {
  readonly n: number
  /** n × imageDim: the rows the request thread wrote (refs[2i] < 0). */
  readonly image: Float32Array
  readonly imageOov: Float32Array
  readonly refs: Int32Array
}

export class ImageProjections {
  private readonly floats: readonly Float32Array[]
  private readonly ints: readonly Int32Array[]

  constructor(
    slabs: readonly SharedArrayBuffer[], private readonly imageDim: number, private readonly dim: number,
    /** The projection of the OOV image vector (rows with imageOov = 1 are that vector). */
    private readonly oov: Float32Array,
    private readonly project: (rows: Float32Array, m: number) => Promise<Float32Array>,
  ) {
    this.floats = slabs.map((b) => new Float32Array(b))
    this.ints = slabs.map((b) => new Int32Array(b))
  }

  /** Writes row i's projection at out[i × dim] for every row; returns how many rows were projected now. */
  async fill(out: Float32Array, x: ImageRows): Promise<number> {
    const { n, refs } = x
    const di = this.imageDim
    const dim = this.dim
    // Rows to project: index, slab (−1: the request thread's row), offset and generation read.
    const todo: number[] = []
    for (let i = 0; i < n; i++) {
      const slab = refs[2 * i] as number
      if (slab < 0) {
        if (x.imageOov[i] === 1) out.set(this.oov, i * dim)
        else todo.push(i, -1, 0, 0)
        continue
      }
      const offset = refs[2 * i + 1] as number
      const ints = this.ints[slab]
      if (!ints) throw new Error(`scorer: unknown vector slab ${slab}`)
      const gen = Atomics.load(ints, offset + di)
      if (gen !== 0 && Atomics.load(ints, offset + di + 1) === gen) {
        const at = offset + di + 2
        out.set((this.floats[slab] as Float32Array).subarray(at, at + dim), i * dim)
      } else {
        todo.push(i, slab, offset, gen)
      }
    }
    const m = todo.length / 4
    if (m === 0) return 0
    // A new array per run: requests overlap in a scorer thread, and a run may read its input later.
    const batch = new Float32Array(m * di)
    for (let j = 0; j < m; j++) {
      const i = todo[4 * j] as number
      const slab = todo[4 * j + 1] as number
      const offset = todo[4 * j + 2] as number
      const src = slab < 0 ? x.image.subarray(i * di, (i + 1) * di) : (this.floats[slab] as Float32Array).subarray(offset, offset + di)
      batch.set(src, j * di)
    }
    const p = await this.project(batch, m)
    for (let j = 0; j < m; j++) {
      const i = todo[4 * j] as number
      const slab = todo[4 * j + 1] as number
      const row = p.subarray(j * dim, (j + 1) * dim)
      out.set(row, i * dim)
      if (slab < 0) continue
      const offset = todo[4 * j + 2] as number
      const gen = todo[4 * j + 3] as number
      const ints = this.ints[slab] as Int32Array
      // Not when the slot was adopted again meanwhile (cannot happen inside the quarantine; cheap to rule out).
      if (gen === 0 || Atomics.load(ints, offset + di) !== gen) continue
      ;(this.floats[slab] as Float32Array).set(row, offset + di + 2)
      Atomics.store(ints, offset + di + 1, gen)
    }
    return m
  }
}
