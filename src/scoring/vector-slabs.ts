// Cached vectors kept in SharedArrayBuffers, so a scorer thread copies them into the head's input
// itself and the request thread only hands over where they are (issue 11: copying 100 items'
// vectors, 560 kB, was 11–12 % of the request thread's CPU). The slabs are made at start-up and
// given to every scorer thread once; their pages are committed only as they fill.

/** Where a vector lives: slab index and offset in floats. */
export interface VectorRef { readonly slab: number; readonly offset: number }

const SLAB_BYTES = 8 << 20
/**
 * A freed slot is reused only after this long: a scorer thread may still be about to read it for a
 * request handed over just before the eviction (requests wait at most MAX_BUDGET_MS, ≤ 60 s).
 */
export const QUARANTINE_MS = 60_000

interface Freed { readonly slab: number; readonly offset: number; readonly at: number }

/**
 * A slot's room after its vector, for vectors of one length: a generation word (which adoption the
 * slot holds now), then `floats` more values (image slots: the head's projection of the vector,
 * with its own generation word, written by the scorer threads: src/scoring/image-projections.ts).
 */
export interface SlotTail {
  readonly length: number
  readonly floats: number
}

/**
 * Fixed-size slots in a fixed set of slabs: bump allocation, and per slot size a FIFO of freed
 * slots reused after QUARANTINE_MS. When no slot is free the vector stays an ordinary array (the
 * request thread then copies it, as before): never more shared memory than `maxBytes`.
 */
export class VectorSlabs {
  readonly buffers: readonly SharedArrayBuffer[]
  private readonly views: readonly Float32Array[]
  private readonly index = new Map<ArrayBufferLike, number>()
  private readonly freed = new Map<number, Freed[]>()
  private readonly ints: readonly Int32Array[]
  /** Floats after the vector per vector length (generation word included); 0 for other lengths. */
  private readonly tails = new Map<number, number>()
  private slab = 0
  private used = 0 // floats used in the current slab
  private generation = 0

  constructor(maxBytes: number, private readonly now: () => number = Date.now, tails: readonly SlotTail[] = []) {
    const count = Math.max(1, Math.ceil(maxBytes / SLAB_BYTES))
    this.buffers = Array.from({ length: count }, () => new SharedArrayBuffer(SLAB_BYTES))
    this.views = this.buffers.map((b) => new Float32Array(b))
    this.ints = this.buffers.map((b) => new Int32Array(b))
    this.buffers.forEach((b, i) => this.index.set(b, i))
    for (const t of tails) this.tails.set(t.length, 1 + t.floats)
  }

  /** Bytes a vector of this length takes in a slab beyond its own (its slot's tail; L1 charges them). */
  tailBytes(length: number): number {
    return (this.tails.get(length) ?? 0) * Float32Array.BYTES_PER_ELEMENT
  }

  /**
   * A copy of `v` in a slab (or `v` itself when it is already in one, or no slot is free). A slot
   * with a tail gets a new generation word (never 0), so what was derived from its previous vector
   * is known stale.
   */
  adopt(v: Float32Array): Float32Array {
    if (this.index.has(v.buffer) || v.length === 0) return v
    const tail = this.tails.get(v.length) ?? 0
    const at = this.take(v.length + tail)
    if (!at) return v
    const copy = (this.views[at.slab] as Float32Array).subarray(at.offset, at.offset + v.length)
    copy.set(v)
    if (tail > 0) {
      this.generation = this.generation >= 0x7fffffff ? 1 : this.generation + 1
      Atomics.store(this.ints[at.slab] as Int32Array, at.offset + v.length, this.generation)
    }
    return copy
  }

  /** Gives a slab vector's slot back (after the quarantine); other arrays are ignored. */
  release(v: Float32Array): void {
    const slab = this.index.get(v.buffer)
    if (slab === undefined) return
    const size = v.length + (this.tails.get(v.length) ?? 0)
    let list = this.freed.get(size)
    if (!list) this.freed.set(size, (list = []))
    list.push({ slab, offset: v.byteOffset / Float32Array.BYTES_PER_ELEMENT, at: this.now() })
  }

  /** Where `v` lives, or undefined when it is not in a slab. */
  locate(v: Float32Array): VectorRef | undefined {
    const slab = this.index.get(v.buffer)
    return slab === undefined ? undefined : { slab, offset: v.byteOffset / Float32Array.BYTES_PER_ELEMENT }
  }

  /** The slab index of `v`, −1 when it is not in one (the request thread's allocation-free locate). */
  slabOf(v: Float32Array): number {
    return this.index.get(v.buffer) ?? -1
  }

  private take(length: number): { slab: number; offset: number } | undefined {
    const list = this.freed.get(length)
    const head = list?.[0]
    if (list && head && this.now() - head.at >= QUARANTINE_MS) return list.shift()
    const capacity = SLAB_BYTES / Float32Array.BYTES_PER_ELEMENT
    if (length > capacity) return undefined
    if (this.used + length > capacity) {
      if (this.slab + 1 >= this.buffers.length) return undefined
      this.slab++
      this.used = 0
    }
    const offset = this.used
    this.used += length
    return { slab: this.slab, offset }
  }
}
