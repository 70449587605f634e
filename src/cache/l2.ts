import type { Metrics } from '../metrics.ts'
import { parseModality, type Modality } from './keys.ts'
import { OutageLog, type CacheLogger } from './outage-log.ts'
import { settleWithin } from '../util/settle-within.ts'
import { bufferToVector, vectorToBuffer } from './vector-codec.ts'
import { NodeCircuits } from './node-circuits.ts'

// The shared tier: embeddings in Redis as raw little-endian float32 values. Every call is bounded
// by the caller's deadline and none throws: an unreachable or slow Redis reads as misses
// (DESIGN.md request path step 3, issue 6).

/** The part of a pipeline L2 uses (ioredis' ChainableCommander fits). */
export interface L2Pipeline {
  set(key: string, value: Buffer, secondsToken: 'EX', seconds: number): unknown
  getBuffer(key: string): unknown
  exec(): Promise<Array<[error: Error | null, result: unknown]> | null>
}

/**
 * The part of an ioredis client (Redis or Cluster) L2 uses; build it with createCacheRedis() for
 * the fail-fast settings. On a cluster, keys are spread over every master (not hash-tagged), so a
 * multi-key MGET would fail (CROSSSLOT): L2 reads each master's keys with one read-only script
 * (GET_LOCAL below), all masters in parallel.
 */
export interface L2Redis {
  readonly status: string
  readonly isCluster: boolean
  /** A cluster's slot map (slot → node keys, master first), as ioredis' Cluster keeps it. */
  readonly slots?: ReadonlyArray<readonly string[] | undefined>
  mgetBuffer(keys: string[]): Promise<Array<Buffer | null>>
  getBuffer(key: string): Promise<Buffer | null>
  /** A command by name with binary replies (here: EVAL of GET_LOCAL). */
  callBuffer(command: string, args: Array<string | number>): Promise<unknown>
  set(key: string, value: Buffer, secondsToken: 'EX', seconds: number): Promise<unknown>
  pipeline(): L2Pipeline
  on(event: 'error', listener: (err: Error) => void): unknown
  on(event: 'ready', listener: () => void): unknown
}

/**
 * One master's share of a request's keys in one command: an MGET across slots. Redis Cluster
 * refuses a multi-key command whose keys hash to different slots (CROSSSLOT) even on one node; a
 * script flagged `allow-cross-slot-keys` (Redis ≥ 7.0) may read undeclared keys of any slot the
 * node serves. The first key is declared, so the client routes the call to the master of its slot;
 * the rest are arguments. A key whose slot is not (or no longer) local fails the whole script, and
 * L2 reads that group again one GET per key, which ioredis redirects (MOVED/ASK).
 *
 * Why not a pipeline of GETs per master, as before: in a bench on this machine (40 calls/s, 50 keys,
 * open loop) a 50-GET pipeline had p99 5.4 ms against 1.1 ms for one MGET of the same keys; one
 * script call per master had 1.5 ms (the reply is one array, not 50 replies to parse and settle).
 */
export const GET_LOCAL = '#!lua flags=allow-cross-slot-keys,no-writes\n' +
  'local out = {redis.call("GET", KEYS[1])}\n' +
  'for i, k in ipairs(ARGV) do out[i + 1] = redis.call("GET", k) end\n' +
  'return out'

/** A cluster read's callbacks: key i answered (bytes, or null when absent); a read failed. */
type Take = (i: number, bytes: unknown) => void
type Fail = (err: unknown) => void

export interface L2Options {
  readonly redis: L2Redis
  /** Floats per vector by modality; a stored value of another length is a miss. */
  readonly dims: Readonly<Record<Modality, number>>
  readonly metrics: Pick<Metrics, 'redisErrors'>
  readonly logger: CacheLogger
  /** Bound on a write when the caller gives no deadline (writes are off the request path). Default 1000 ms. */
  readonly writeTimeoutMs?: number
}

export interface CacheEntry {
  readonly key: string
  readonly vector: Float32Array
}

export class L2Cache {
  readonly #redis: L2Redis
  readonly #dims: Readonly<Record<Modality, number>>
  readonly #metrics: Pick<Metrics, 'redisErrors'>
  readonly #outage: OutageLog
  readonly #logger: CacheLogger
  readonly #writeTimeoutMs: number
  readonly #circuits: NodeCircuits | undefined
  /** Cluster reads use GET_LOCAL until a server refuses the script itself. */
  #scripts = true

  constructor(opts: L2Options) {
    this.#redis = opts.redis
    this.#dims = opts.dims
    this.#metrics = opts.metrics
    this.#logger = opts.logger
    this.#outage = new OutageLog(opts.logger)
    this.#writeTimeoutMs = opts.writeTimeoutMs ?? 1000
    const redis = opts.redis
    this.#circuits = redis.isCluster ? new NodeCircuits(() => redis.slots ?? []) : undefined
    // Without an 'error' listener ioredis prints every failed reconnect to stderr.
    this.#redis.on('error', (err) => this.#outage.failed('connect', err))
    this.#redis.on('ready', () => this.#outage.recovered())
  }

  /** Connected and past the ready check; false while Redis is down or reconnecting. */
  isReady(): boolean {
    return this.#redis.status === 'ready'
  }

  /**
   * The vectors for `keys` (undefined = miss), in one MGET (on a cluster: in parallel per node). Resolves by `deadline` (ms since the
   * epoch) at the latest; on any failure every key is a miss.
   */
  async getMany(keys: readonly string[], deadline: number): Promise<Array<Float32Array | undefined>> {
    const out = new Array<Float32Array | undefined>(keys.length).fill(undefined)
    if (keys.length === 0) return out
    const remaining = deadline - Date.now()
    // No time left is the request's budget, not a Redis fault: not counted.
    if (remaining <= 0) return out
    if (!this.isReady()) {
      this.#failed('get', new Error(`redis is ${this.#redis.status}`))
      return out
    }
    if (this.#redis.isCluster) return this.#getSpread(keys, out, remaining)
    // ioredis only reads the array; its typings ask for a mutable one.
    const reply = await settleWithin(() => this.#redis.mgetBuffer(keys as string[]), remaining)
    if (!reply.ok) {
      this.#failed('get', reply.error)
      return out
    }
    this.#outage.recovered()
    let invalid = 0
    for (let i = 0; i < keys.length; i++) {
      const bytes = reply.value[i]
      if (!bytes) continue
      const vector = this.#decode(keys[i] ?? '', bytes)
      if (vector) out[i] = vector
      else invalid++
    }
    if (invalid > 0) this.#metrics.redisErrors.inc({ op: 'get_invalid' }, invalid)
    return out
  }

  /**
   * Cluster reads: one GET_LOCAL call per master per request (#readGroup), all masters in
   * parallel. Each master's answers count as they arrive, so a master that fails over costs only
   * the keys of its slots, and what arrived by the deadline is kept. A master whose keys went
   * unanswered is skipped for a while (node-circuits.ts): its keys are misses at once instead of
   * each request waiting out its stage.
   */
  async #getSpread(keys: readonly string[], out: Array<Float32Array | undefined>, remaining: number): Promise<Array<Float32Array | undefined>> {
    let failed: Error | undefined
    let invalid = 0
    let open = true
    const slotNodes = keys.map((key) => this.#circuits?.slotNodes(key))
    const nodes = slotNodes.map((n) => n?.[0])
    const answered = new Array<boolean>(keys.length).fill(false)
    let skipped = 0
    const take = (i: number, bytes: unknown): void => {
      if (!open) return
      answered[i] = true
      if (!(bytes instanceof Buffer)) return
      const vector = this.#decode(keys[i] as string, bytes)
      if (vector) out[i] = vector
      else invalid++
    }
    const fail = (err: unknown): void => { failed ??= err instanceof Error ? err : new Error(String(err)) }
    // One read per master per request, not ioredis' auto-pipelining (it keeps one pipeline in flight
    // per node, so concurrent requests queued behind each other's round trips). Keys whose master
    // is not known yet go one by one. Keyed by the slot map's node list itself (ioredis shares one
    // array per slot range): no string per key.
    const groups = new Map<readonly string[], number[]>()
    const loose: number[] = []
    keys.forEach((_, i) => {
      const node = nodes[i]
      if (this.#circuits?.isOpen(node)) {
        skipped++
        return
      }
      if (node === undefined) { loose.push(i); return }
      // One read must stay within one group of nodes (ioredis groups slots the same way).
      const within = slotNodes[i] as readonly string[]
      const group = groups.get(within)
      if (group) group.push(i)
      else groups.set(within, [i])
    })
    const reads: Array<Promise<void>> = []
    for (const idx of groups.values()) reads.push(this.#readGroup(keys, idx, take, fail))
    for (const i of loose) reads.push(this.#redis.getBuffer(keys[i] as string).then((bytes) => take(i, bytes), fail))
    if (reads.length > 0) await settleWithin(() => Promise.all(reads), remaining)
    open = false
    const result = out.slice()
    const unanswered = keys.length - skipped - answered.filter(Boolean).length
    if (this.#circuits) {
      const late = new Set<string>()
      const fine = new Set<string>()
      nodes.forEach((node, i) => {
        if (node === undefined || this.#circuits?.isOpen(node)) return
        ;(answered[i] ? fine : late).add(node)
      })
      for (const node of late) this.#circuits.open(node)
      for (const node of fine) if (!late.has(node)) this.#circuits.close(node)
    }
    if (skipped > 0) this.#metrics.redisErrors.inc({ op: 'get_node_down' }, skipped)
    if (unanswered > 0) this.#failed('get', failed ?? new Error(`${unanswered} of ${keys.length} keys unanswered within ${Math.round(remaining)} ms`))
    else if (skipped === 0) this.#outage.recovered()
    if (invalid > 0) this.#metrics.redisErrors.inc({ op: 'get_invalid' }, invalid)
    return result
  }

  /**
   * One master's keys (`idx` into `keys`) in one GET_LOCAL call. When the script fails on a slot
   * that moved or is moving (stale slot map, resharding), those keys are read again one GET per
   * pipeline, which ioredis redirects (MOVED/ASK) key by key. A server that refuses the script
   * itself (Redis < 7.0) gets one pipeline of GETs per master from then on.
   */
  async #readGroup(keys: readonly string[], idx: readonly number[], take: Take, fail: Fail): Promise<void> {
    const own = idx.map((i) => keys[i] as string)
    if (this.#scripts) {
      try {
        const replies = await this.#redis.callBuffer('eval', [GET_LOCAL, 1, ...own])
        if (Array.isArray(replies) && replies.length === own.length) replies.forEach((bytes, j) => take(idx[j] as number, bytes))
        else fail(new Error(`GET_LOCAL answered ${Array.isArray(replies) ? replies.length : typeof replies} for ${own.length} keys`))
        return
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err)
        if (/non local key|^(MOVED|ASK|TRYAGAIN) /.test(message)) {
          await Promise.all(idx.map((i) => this.#readPipelined(keys, [i], take, fail)))
          return
        }
        if (!(err instanceof Error && /compil|flag|shebang/i.test(message))) {
          fail(err) // the node is down or slow: its keys are misses, its circuit opens (no second try)
          return
        }
        this.#scripts = false
        this.#logger.warn({ err: err.message }, 'redis cluster refused the L2 read script (Redis >= 7.0 runs it): L2 reads use pipelines of GETs')
      }
    }
    await this.#readPipelined(keys, idx, take, fail)
  }

  /** The keys at `idx` in one pipeline of GETs. */
  async #readPipelined(keys: readonly string[], idx: readonly number[], take: Take, fail: Fail): Promise<void> {
    const pipeline = this.#redis.pipeline()
    for (const i of idx) pipeline.getBuffer(keys[i] as string)
    try {
      const replies = await pipeline.exec()
      if (replies === null) { fail(new Error('pipeline discarded')); return }
      replies.forEach(([err, bytes], j) => { if (err) fail(err); else take(idx[j] as number, bytes) })
    } catch (err) {
      fail(err)
    }
  }

  /**
   * Writes `entries` with a TTL in one pipelined round trip of SET EX (per node on a cluster). Resolves with the number
   * written (0 when Redis is down or slow); entries whose vector has the wrong length are skipped.
   */
  async setMany(entries: readonly CacheEntry[], ttlSeconds: number, deadline?: number): Promise<number> {
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) {
      throw new RangeError(`L2 TTL must be a positive whole number of seconds (got ${ttlSeconds})`)
    }
    if (entries.length === 0) return 0
    const remaining = (deadline ?? Date.now() + this.#writeTimeoutMs) - Date.now()
    if (remaining <= 0) return 0
    if (!this.isReady()) {
      this.#failed('set', new Error(`redis is ${this.#redis.status}`))
      return 0
    }
    const valid = entries.filter(({ key, vector }) => vector.length === this.#dimOf(key))
    if (valid.length === 0) return 0
    const queued = valid.length
    const reply = await settleWithin(() => this.#write(valid, ttlSeconds), remaining)
    if (!reply.ok || reply.value === null) {
      this.#failed('set', reply.ok ? new Error('pipeline discarded') : reply.error)
      return 0
    }
    this.#outage.recovered()
    const written = reply.value.filter((err) => !err).length
    if (written < queued) this.#metrics.redisErrors.inc({ op: 'set' }, queued - written)
    return written
  }

  /** One error (or null) per entry: one pipeline on one Redis; per-node auto-pipelines on a cluster. */
  async #write(entries: readonly CacheEntry[], ttlSeconds: number): Promise<Array<Error | null> | null> {
    if (this.#redis.isCluster) {
      return Promise.all(entries.map(({ key, vector }) => this.#redis.set(key, vectorToBuffer(vector), 'EX', ttlSeconds)
        .then(() => null, (err: unknown) => (err instanceof Error ? err : new Error(String(err))))))
    }
    const pipeline = this.#redis.pipeline()
    for (const { key, vector } of entries) pipeline.set(key, vectorToBuffer(vector), 'EX', ttlSeconds)
    const replies = await pipeline.exec()
    return replies === null ? null : replies.map(([err]) => err)
  }

  #dimOf(key: string): number | undefined {
    const modality = parseModality(key)
    return modality === undefined ? undefined : this.#dims[modality]
  }

  #decode(key: string, bytes: Buffer): Float32Array | undefined {
    const dim = this.#dimOf(key)
    return dim === undefined ? undefined : bufferToVector(bytes, dim)
  }

  #failed(op: 'get' | 'set', err: Error): void {
    this.#metrics.redisErrors.inc({ op })
    this.#outage.failed(op, err)
  }
}
