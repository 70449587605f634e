import { LRUCache } from 'lru-cache'
import {
  readSnapshot, writeSnapshot, type EncoderVersions, type SavedJob, type SnapshotRejection, type SnapshotWritten,
} from './l1-snapshot.ts'

// In-process cache of embeddings, bounded in bytes rather than entries because vectors of
// different modalities differ 10× in size (image 1280 floats, text 128).

/**
 * Bytes charged per entry on top of the vector: the key string (counted as 1 byte per char),
 * the Float32Array object and its backing-store record, and the LRU's slots. Measured at roughly
 * 200–330 bytes per entry (RSS growth over 200k entries, node 20); rounded up.
 */
export const ENTRY_OVERHEAD_BYTES = 256

export interface L1Options {
  /** Byte budget of the cache (vectors plus ENTRY_OVERHEAD_BYTES and key length per entry). */
  readonly maxBytes: number
  /** Where stored vectors live (shared memory scorer threads read: src/scoring/vector-slabs.ts). */
  readonly home?: VectorHome
}

/** Takes a vector into its own storage (returning the copy kept) and gets the slot back when the entry goes. */
export interface VectorHome {
  adopt(v: Float32Array): Float32Array
  release(v: Float32Array): void
  /** Bytes the home keeps beside a vector of this length (charged to the budget with it). */
  tailBytes(length: number): number
}

export type SnapshotLoad =
  | { readonly loaded: true; readonly entries: number; readonly jobs: readonly SavedJob[] }
  | { readonly loaded: false; readonly rejection: SnapshotRejection; readonly reason: string }

export class L1Cache {
  readonly maxBytes: number
  readonly #lru: LRUCache<string, Float32Array>
  readonly #home: VectorHome | undefined

  constructor(opts: L1Options) {
    if (!Number.isSafeInteger(opts.maxBytes) || opts.maxBytes <= 0) {
      throw new RangeError(`L1 byte budget must be a positive integer (got ${opts.maxBytes})`)
    }
    this.maxBytes = opts.maxBytes
    const home = opts.home
    this.#home = home
    this.#lru = new LRUCache<string, Float32Array>({
      maxSize: opts.maxBytes,
      sizeCalculation: (vector, key) => vector.byteLength + (home ? home.tailBytes(vector.length) : 0) + key.length + ENTRY_OVERHEAD_BYTES,
      ...(home ? { dispose: (vector: Float32Array) => home.release(vector) } : {}),
    })
  }

  /** The cached vector (shared, treat as read-only); marks it most recently used. */
  get(key: string): Float32Array | undefined {
    return this.#lru.get(key)
  }

  /**
   * Stores a vector, handed over without a copy when it owns its whole ArrayBuffer. A view into a
   * larger buffer (one row of an encoder's batch output) is copied: keeping the view would pin the
   * whole batch while the budget counts one row. A vector larger than the whole budget is not kept.
   */
  set(key: string, vector: Float32Array): void {
    if (vector.length === 0) return
    if (this.#home) this.#lru.set(key, this.#home.adopt(vector))
    else this.#lru.set(key, vector.byteLength === vector.buffer.byteLength ? vector : vector.slice())
  }

  /** Presence without touching recency. */
  has(key: string): boolean {
    return this.#lru.has(key)
  }

  get size(): number {
    return this.#lru.size
  }

  /** Bytes charged against the budget. */
  get bytes(): number {
    return this.#lru.calculatedSize
  }

  /** Entries from least to most recently used. */
  entries(): Array<[string, Float32Array]> {
    const out: Array<[string, Float32Array]> = []
    for (const key of this.#lru.rkeys()) {
      const vector = this.#lru.peek(key)
      if (vector) out.push([key, vector])
    }
    return out
  }

  clear(): void {
    this.#lru.clear()
  }

  /** Writes every entry to `path` (atomically) for encoder `versions`. Throws on I/O errors. */
  /** `jobs`: background jobs not done yet, saved beside the vectors (see l1-snapshot.ts). */
  async saveSnapshot(path: string, opts: { versions: EncoderVersions; jobs?: readonly SavedJob[] }): Promise<SnapshotWritten> {
    return writeSnapshot(path, this.entries(), opts.versions, opts.jobs)
  }

  /**
   * Loads a snapshot written for the same encoder versions. A missing, corrupt, truncated or
   * foreign file changes nothing and comes back with a reason for the caller to log.
   */
  async loadSnapshot(path: string, opts: { versions: EncoderVersions }): Promise<SnapshotLoad> {
    const read = await readSnapshot(path, opts.versions)
    if (!read.ok) return { loaded: false, rejection: read.rejection, reason: read.reason }
    const { keys, vector } = read.entries
    for (let i = 0; i < keys.length; i++) {
      const v = vector(i)
      this.#lru.set(keys[i] as string, this.#home ? this.#home.adopt(v) : v)
    }
    // A job whose vector made it into the snapshot finished after all.
    const jobs = read.jobs.filter((j) => !this.#lru.has(j.key))
    return { loaded: true, entries: keys.length, jobs }
  }
}
