import { LRUCache } from 'lru-cache'

// Table rows of categorical values already hashed, bounded in bytes for all fields together
// (FIELD_CACHE_MAX_BYTES). Measured: murmur3 of a short value costs 2.0–2.7 µs on this 2-core
// machine (TextEncoder allocation included; load ~25), a cache hit 0.03–0.19 µs, so a 1000-item
// request with 5 categorical fields spends ~10 ms hashing without it. The previous per-field maps
// (100,000 values each, cleared all at once) could hold ~0.5 GB outside L1_MAX_BYTES.
//
// One LRU per field, keyed by the value itself: a value parsed from the request is a flat string
// hashed once, where a `${field}\0${value}` key was a new rope to flatten and hash on every lookup
// (~200 ns each, ~600 lookups per 100-item request: 9.6 % of the request thread with L1's gets).
// When the fields together pass the budget, the field holding the most bytes gives up its least
// recently used value.

/** Bytes charged per entry beyond the value's characters: the LRU's slots and the Map entry. */
export const ROW_ENTRY_OVERHEAD_BYTES = 96

export interface RowCacheMetrics {
  readonly fieldRowCache: { set(labels: { stat: 'bytes' | 'entries' }, value: number): void }
}

/** Bytes charged for one cached value (a JS string: 2 bytes per UTF-16 unit at worst). */
function entryBytes(value: string): number {
  return 2 * value.length + ROW_ENTRY_OVERHEAD_BYTES
}

export class RowCache {
  readonly #fields = new Map<string, LRUCache<string, number>>()
  readonly #maxBytes: number
  readonly #metrics: RowCacheMetrics | undefined

  constructor(opts: { maxBytes: number; metrics?: RowCacheMetrics }) {
    this.#maxBytes = opts.maxBytes
    this.#metrics = opts.metrics
  }

  /** The row of `value` in `field`, computed by `row` on a miss. */
  get(field: string, value: string, row: () => number): number {
    let lru = this.#fields.get(field)
    const hit = lru?.get(value)
    if (hit !== undefined) return hit
    if (!lru) {
      lru = new LRUCache<string, number>({ maxSize: this.#maxBytes, sizeCalculation: (_v, key) => entryBytes(key) })
      this.#fields.set(field, lru)
    }
    const computed = row()
    if (entryBytes(value) > this.#maxBytes) return computed
    lru.set(value, computed)
    while (this.bytes > this.#maxBytes) this.#largest().pop()
    this.#metrics?.fieldRowCache.set({ stat: 'bytes' }, this.bytes)
    this.#metrics?.fieldRowCache.set({ stat: 'entries' }, this.size)
    return computed
  }

  /** Bytes charged over every field (a sum over the few fields, taken on misses only). */
  get bytes(): number {
    let sum = 0
    for (const lru of this.#fields.values()) sum += lru.calculatedSize
    return sum
  }

  get size(): number {
    let sum = 0
    for (const lru of this.#fields.values()) sum += lru.size
    return sum
  }

  #largest(): LRUCache<string, number> {
    let best: LRUCache<string, number> | undefined
    for (const lru of this.#fields.values()) if (!best || lru.calculatedSize > best.calculatedSize) best = lru
    return best as LRUCache<string, number>
  }
}
