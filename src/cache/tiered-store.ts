import type { Metrics } from '../metrics.ts'
import { parseModality } from './keys.ts'
import type { L1Cache } from './l1.ts'
import type { CacheEntry, L2Cache } from './l2.ts'

// L1 in front of L2 (DESIGN.md request path step 3): all keys in L1, the misses in one Redis round
// trip, L2 hits promoted into L1. Without Redis the store is L1 only (the embedded mode).

export type CacheTier = 'l1' | 'l2'

export interface CacheHit {
  readonly vector: Float32Array
  readonly tier: CacheTier
}

export interface TieredStoreOptions {
  readonly l1: L1Cache
  readonly l2?: L2Cache
  /** TTL of vectors written to Redis. */
  readonly ttlSeconds: number
  readonly metrics: Pick<Metrics, 'cacheLookups'>
}

/** Hit/miss tallies of one lookup by modality, added to the counter once per lookup, not per key. */
interface Tally { l1Hit: number; l1Miss: number; l2Hit: number; l2Miss: number }

export class TieredStore {
  readonly l1: L1Cache
  readonly l2?: L2Cache
  readonly #ttlSeconds: number
  readonly #metrics: Pick<Metrics, 'cacheLookups'>

  constructor(opts: TieredStoreOptions) {
    if (!Number.isSafeInteger(opts.ttlSeconds) || opts.ttlSeconds <= 0) {
      throw new RangeError(`cache TTL must be a positive whole number of seconds (got ${opts.ttlSeconds})`)
    }
    this.l1 = opts.l1
    if (opts.l2) this.l2 = opts.l2
    this.#ttlSeconds = opts.ttlSeconds
    this.#metrics = opts.metrics
  }

  /**
   * One result per key, in order: the vector and the tier it came from, or undefined on a miss.
   * Never rejects; resolves by `deadline` (ms since the epoch) plus the L1 work.
   * Vectors are shared with the cache: read-only. `count: false` keeps the lookup out of the
   * hit/miss metrics (background presence checks are not traffic).
   */
  async lookup(keys: readonly string[], deadline: number, opts: { count?: boolean } = {}): Promise<Array<CacheHit | undefined>> {
    const results = new Array<CacheHit | undefined>(keys.length)
    const tallies = new Map<string, Tally>()
    const missKeys: string[] = []
    const missAt: number[] = []
    const missTally: Tally[] = []
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] ?? ''
      const tally = tallyOf(tallies, key)
      const vector = this.l1.get(key)
      if (vector) {
        results[i] = { vector, tier: 'l1' }
        tally.l1Hit++
      } else {
        results[i] = undefined
        tally.l1Miss++
        missKeys.push(key)
        missAt.push(i)
        missTally.push(tally)
      }
    }
    if (this.l2 && missKeys.length > 0) {
      const found = await this.l2.getMany(missKeys, deadline)
      for (let j = 0; j < missKeys.length; j++) {
        const tally = missTally[j]
        const vector = found[j]
        if (!tally) continue
        if (vector) {
          this.l1.set(missKeys[j] ?? '', vector)
          results[missAt[j] ?? 0] = { vector, tier: 'l2' }
          tally.l2Hit++
        } else {
          tally.l2Miss++
        }
      }
    }
    if (opts.count ?? true) this.#count(tallies)
    return results
  }

  /**
   * Writes computed vectors to L1 and, when configured, to Redis with the TTL. Resolves with the
   * number written to Redis (0 without Redis or while it is down); never rejects.
   */
  async store(entries: readonly CacheEntry[], deadline?: number): Promise<number> {
    for (const { key, vector } of entries) this.l1.set(key, vector)
    return this.l2 ? this.l2.setMany(entries, this.#ttlSeconds, deadline) : 0
  }

  #count(tallies: Map<string, Tally>): void {
    const counter = this.#metrics.cacheLookups
    for (const [modality, t] of tallies) {
      if (t.l1Hit) counter.inc({ tier: 'l1', modality, result: 'hit' }, t.l1Hit)
      if (t.l1Miss) counter.inc({ tier: 'l1', modality, result: 'miss' }, t.l1Miss)
      if (t.l2Hit) counter.inc({ tier: 'l2', modality, result: 'hit' }, t.l2Hit)
      if (t.l2Miss) counter.inc({ tier: 'l2', modality, result: 'miss' }, t.l2Miss)
    }
  }
}

function tallyOf(tallies: Map<string, Tally>, key: string): Tally {
  const modality = parseModality(key) ?? 'other'
  let tally = tallies.get(modality)
  if (!tally) {
    tally = { l1Hit: 0, l1Miss: 0, l2Hit: 0, l2Miss: 0 }
    tallies.set(modality, tally)
  }
  return tally
}
