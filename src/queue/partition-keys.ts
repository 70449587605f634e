// Where a job lives in Redis. The queue of one (modality, encoder version) is split into P
// partitions; all keys of one partition share one hash tag, so every script touches one slot and
// runs unchanged on one Redis or a Redis Cluster. The user's REDIS_PREFIX stays free of braces:
// the queue adds the tag itself.
import type { Modality } from './types.ts'

/** The keys of one partition. `{…}` is the hash tag: `<prefix>:q:{<modality>:<version>:<p>}:<kind>`. */
export interface PartitionKeys {
  readonly modality: Modality
  readonly version: string
  readonly index: number
  /** ZSET of waiting jobs, member = cache key, score = demand (highest first, see redis-scripts.ts). */
  readonly wait: string
  /** HASH cache key → job record JSON {i: input, a: failed attempts, c: lost leases, t: first queued ms, p: demand}. */
  readonly jobs: string
  /** ZSET of retries waiting for their backoff, score = due time (ms, Redis clock). */
  readonly delayed: string
  /** ZSET of jobs leased to a consumer, score = lease expiry (ms, Redis clock). */
  readonly active: string
  /** HASH cache key → lease token of the delivery that holds it. */
  readonly owner: string
  /** ZSET of every job in the partition, score = first queued (ms): the index of QUEUE_MAX_AGE_S. */
  readonly born: string
  /**
   * ZSET of jobs finished recently, score = when (ms, Redis clock), trimmed to the done window.
   * An outbox resend of a job whose earlier, unanswered try queued it finds it here and is not
   * run a second time; fresh offers do not look here.
   */
  readonly done: string
  /** Marker set after a permanent or exhausted failure (value = reason, PX TTL); same slot. */
  negative(cacheKey: string): string
}

export function partitionKeys(prefix: string, modality: Modality, version: string, index: number): PartitionKeys {
  const base = `${prefix}:q:{${modality}:${version}:${index}}`
  return {
    modality, version, index,
    wait: `${base}:wait`,
    jobs: `${base}:jobs`,
    delayed: `${base}:delayed`,
    active: `${base}:active`,
    owner: `${base}:owner`,
    born: `${base}:born`,
    done: `${base}:done`,
    negative: (cacheKey) => `${base}:neg:${cacheKey}`,
  }
}

/**
 * Partition of a cache key: 32-bit FNV-1a of its UTF-16 code units, mod P. Stable across
 * processes, Node versions and platforms (no seed), cheap on the request path, and uniform
 * enough on the hex digests cache keys end with. Changing P moves keys between partitions: jobs
 * queued before the change are still consumed (every partition is read), only their dedupe
 * across the change is lost.
 */
export function partitionOf(cacheKey: string, partitions: number): number {
  let h = 0x811c9dc5
  for (let i = 0; i < cacheKey.length; i++) {
    h ^= cacheKey.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h % partitions
}

/**
 * Modality and encoder version of a cache key `<prefix>:<modality>:<version>:<digest>`, read
 * from the end (prefixes may contain ':'); undefined when the key has no such shape.
 */
export function parseJobKey(cacheKey: string): { modality: Modality; version: string } | undefined {
  const digestSep = cacheKey.lastIndexOf(':')
  if (digestSep <= 0) return undefined
  const versionSep = cacheKey.lastIndexOf(':', digestSep - 1)
  if (versionSep <= 0) return undefined
  const modality = cacheKey.slice(cacheKey.lastIndexOf(':', versionSep - 1) + 1, versionSep)
  const version = cacheKey.slice(versionSep + 1, digestSep)
  if ((modality !== 'image' && modality !== 'text') || version.length === 0) return undefined
  return { modality, version }
}

/**
 * SCAN MATCH pattern of one kind of partition key over every version and partition (admin tools,
 * benches, tests): e.g. `kind = 'jobs'` matches every job-record hash. Braces are literal in
 * Redis globs.
 */
export function partitionKeyPattern(prefix: string, kind: 'wait' | 'jobs' | 'delayed' | 'active', modality?: Modality): string {
  return `${prefix}:q:{${modality ?? '*'}:*}:${kind}`
}
