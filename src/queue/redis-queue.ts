// The durable queue, shared by every instance on one Redis (used when REDIS_URL is set).
//
// Why Redis Streams with a consumer group rather than BullMQ: a job here is three short strings
// and the useful unit of work is a micro-batch. XREADGROUP COUNT hands one consumer up to
// batchSize jobs of a modality in one call, where BullMQ moves jobs one at a time (its batches
// are a paid feature) and keeps a hash, several list/ZSET entries and events per job. Streams
// give what BullMQ would: one XADD per job, a pending list per consumer (crash → XAUTOCLAIM),
// delivery counts, AOF durability; the remaining parts (dedupe marker, delayed retries, negative
// cache) are small Lua scripts. It also avoids a dependency that brings its own connection rules.
import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { BackoffOptions } from './backoff.ts'
import { assertConsumeOptions } from './consume-options.ts'
import { JobTally } from './job-tally.ts'
import { queueKeys, type QueueKeys } from './redis-keys.ts'
import { DEPTH, ENQUEUE, PRUNE_CONSUMERS } from './redis-scripts.ts'
import { StreamConsumer } from './stream-consumer.ts'
import {
  MODALITIES, type CloseOptions, type ConsumeOptions, type EmbedHandler, type EmbedJob, type EmbedQueue,
  type JobMetricOutcome, type QueueMetrics,
} from './types.ts'
import { withTimeout } from '../util/settle-within.ts'

/** The parts of an ioredis client the queue uses; `duplicate()` opens one connection per read loop. */
export type QueueRedis = Pick<Redis, 'call' | 'status' | 'duplicate'>

export interface RedisQueueOptions {
  /**
   * Command connection; the caller owns it (the queue never closes it). Without `keyPrefix`: the
   * queue builds its keys from `prefix`. Read loops use duplicates of it.
   */
  readonly redis: QueueRedis
  /** Key prefix; a hash tag such as `{ctrq}` on Redis Cluster. */
  readonly prefix: string
  readonly metrics: QueueMetrics
  /** Attempts per job, the first included; a redelivery after a crash counts as one. */
  readonly maxAttempts: number
  readonly backoff: BackoffOptions
  readonly negativeTtlMs: number
  /** Lifetime of the dedupe marker; must exceed the longest wait in the queue. Default 1 h. */
  readonly pendingTtlMs?: number
  /** Most entries per modality stream (waiting + in flight); beyond it jobs are dropped. Default 100,000. */
  readonly maxStreamLength?: number
  /** An entry pending this long in a consumer is taken over by another; must exceed the slowest batch. Default 60 s. */
  readonly claimIdleMs?: number
  /** Consumer names idle this long with nothing pending are removed from the group. Default 24 h. */
  readonly pruneIdleMs?: number
  /** How often due retries are promoted and idle entries reclaimed. Default 1 s. */
  readonly maintenanceIntervalMs?: number
  /** Longest XREADGROUP BLOCK. Default 1 s. */
  readonly pollMs?: number
  /** Enqueue gives up (returns 0) after this long; it runs on the request path. Default 250 ms. */
  readonly enqueueTimeoutMs?: number
  readonly group?: string
  /** Unique per process by default (hostname-pid-random) so a restarted instance never inherits a dead one's entries silently. */
  readonly consumerName?: string
  /** `queue` label of the depth gauge. */
  readonly name?: string
  readonly random?: () => number
}

/** Jobs per ENQUEUE call: keeps one script's KEYS list and run time small. */
const ENQUEUE_CHUNK = 200
/** Client states in which a command would only wait in ioredis' offline queue. */
const OFFLINE = new Set(['reconnecting', 'close', 'end'])
const CODE_OUTCOME = new Map<unknown, JobMetricOutcome>([[1, 'queued'], [0, 'deduplicated'], [-1, 'negative'], [-2, 'dropped']])

export function uniqueConsumerName(): string {
  return `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`
}

export class RedisQueue implements EmbedQueue {
  readonly consumerName: string
  private readonly keys: QueueKeys
  private readonly group: string
  private readonly consumers: StreamConsumer[] = []
  private depthTimer: NodeJS.Timeout | undefined
  private lastDepth = 0
  private closed = false
  private closing: Promise<void> | undefined

  constructor(private readonly opts: RedisQueueOptions) {
    this.keys = queueKeys(opts.prefix)
    this.group = opts.group ?? 'embedders'
    this.consumerName = opts.consumerName ?? uniqueConsumerName()
  }

  async enqueue(jobs: readonly EmbedJob[]): Promise<number> {
    const tally = new JobTally()
    let accepted = 0
    try {
      if (jobs.length === 0) return 0
      if (this.closed || OFFLINE.has(this.opts.redis.status)) {
        // Known to be offline: do not queue commands behind a reconnect while a request waits.
        if (!this.closed) this.opts.metrics.redisErrors.inc({ op: 'queue_enqueue' })
        for (const job of jobs) tally.add(job.modality, 'dropped')
        return 0
      }
      const chunks: Array<readonly EmbedJob[]> = []
      for (let i = 0; i < jobs.length; i += ENQUEUE_CHUNK) chunks.push(jobs.slice(i, i + ENQUEUE_CHUNK))
      const replies = await withTimeout(Promise.all(chunks.map((chunk) => this.enqueueChunk(chunk))),
        this.opts.enqueueTimeoutMs ?? 250, 'queue enqueue')
      chunks.forEach((chunk, c) => chunk.forEach((job, i) => {
        const outcome = CODE_OUTCOME.get(replies[c]?.[i]) ?? 'dropped'
        if (outcome === 'queued') accepted++
        tally.add(job.modality, outcome)
      }))
      return accepted
    } catch {
      // Never fails the request: the item is served OOV and enqueued again on its next miss.
      this.opts.metrics.redisErrors.inc({ op: 'queue_enqueue' })
      for (const job of jobs) tally.add(job.modality, 'dropped')
      return 0
    } finally {
      tally.flush(this.opts.metrics)
    }
  }

  private async enqueueChunk(jobs: readonly EmbedJob[]): Promise<unknown[]> {
    const keys = [this.keys.stream('image'), this.keys.stream('text')]
    const args: Array<string | number> = [this.opts.pendingTtlMs ?? 3_600_000, this.opts.maxStreamLength ?? 100_000]
    for (const job of jobs) {
      keys.push(this.keys.pending(job.key), this.keys.negative(job.key))
      args.push(job.modality, job.key, job.input)
    }
    const reply = await ENQUEUE.run(this.opts.redis, keys, args)
    return Array.isArray(reply) ? reply : []
  }

  start(handler: EmbedHandler, consume: ConsumeOptions): void {
    if (this.consumers.length > 0) throw new Error('RedisQueue.start() was already called; a queue has one handler')
    if (this.closed) throw new Error('RedisQueue.start() after close()')
    assertConsumeOptions(consume)
    for (const modality of MODALITIES) {
      const consumer = new StreamConsumer({
        redis: this.opts.redis,
        openReader: () => this.openReader(),
        keys: this.keys,
        group: this.group,
        consumer: this.consumerName,
        modality,
        handler,
        consume,
        maxAttempts: this.opts.maxAttempts,
        backoff: this.opts.backoff,
        pendingTtlMs: this.opts.pendingTtlMs ?? 3_600_000,
        negativeTtlMs: this.opts.negativeTtlMs,
        claimIdleMs: this.opts.claimIdleMs ?? 60_000,
        pruneIdleMs: this.opts.pruneIdleMs ?? 86_400_000,
        maintenanceIntervalMs: this.opts.maintenanceIntervalMs ?? 1_000,
        pollMs: this.opts.pollMs ?? 1_000,
        metrics: this.opts.metrics,
        ...(this.opts.random ? { random: this.opts.random } : {}),
      })
      this.consumers.push(consumer)
      consumer.start()
    }
    this.depthTimer = setInterval(() => void this.depth(), this.opts.maintenanceIntervalMs ?? 1_000)
    this.depthTimer.unref() // the gauge alone must not keep a process alive
  }

  private openReader(): Redis {
    // A command timeout sized for the request path would abort every XREADGROUP BLOCK.
    const reader = this.opts.redis.duplicate({ commandTimeout: undefined })
    // ioredis reports each failed reconnect as an 'error' event (printed when nobody listens);
    // the read loop sees the failure itself, so here it is only counted.
    reader.on('error', () => this.opts.metrics.redisErrors.inc({ op: 'queue_connection' }))
    return reader
  }

  /** Jobs not yet delivered plus retries waiting; on a Redis error, the last known value (error counted). */
  async depth(): Promise<number> {
    try {
      const keys = [...MODALITIES.map((m) => this.keys.stream(m)), ...MODALITIES.map((m) => this.keys.delayed(m))]
      const reply = await withTimeout(DEPTH.run(this.opts.redis, keys, [this.group]), this.opts.enqueueTimeoutMs ?? 250, 'queue depth')
      this.lastDepth = Math.max(0, Number(reply))
    } catch {
      this.opts.metrics.redisErrors.inc({ op: 'queue_depth' })
    }
    this.opts.metrics.queueDepth.set({ queue: this.opts.name ?? 'redis' }, this.lastDepth)
    return this.lastDepth
  }

  /** On a Redis error every key reads as not negative (error counted): the caller just enqueues. */
  async isNegative(keys: readonly string[]): Promise<boolean[]> {
    if (keys.length === 0) return []
    try {
      const reply = await withTimeout(Promise.all(keys.map((key) => this.opts.redis.call('EXISTS', this.keys.negative(key)))),
        this.opts.enqueueTimeoutMs ?? 250, 'queue isNegative')
      return reply.map((n) => n === 1)
    } catch {
      this.opts.metrics.redisErrors.inc({ op: 'queue_negative' })
      return keys.map(() => false)
    }
  }

  /**
   * Stops taking jobs (enqueue returns 0). drain: handle what is in the streams until they look
   * empty; otherwise only finish the batches in hand. Whatever is left stays in Redis for the other
   * instances or the next start: waiting entries in the stream, retries in the delayed ZSET, and
   * batches abandoned at the timeout in this consumer's pending list (reclaimed after claimIdleMs).
   */
  close(opts: CloseOptions): Promise<void> {
    this.closing ??= this.shutDown(opts)
    return this.closing
  }

  private async shutDown({ drain, timeoutMs }: CloseOptions): Promise<void> {
    this.closed = true
    clearInterval(this.depthTimer)
    const deadline = Date.now() + timeoutMs
    await Promise.all(this.consumers.map((c) => c.stop(drain, timeoutMs)))
    if (this.consumers.length === 0) return
    // Forget this consumer's name unless it still holds entries (those must stay claimable).
    try {
      await withTimeout(Promise.all(MODALITIES.map((m) => PRUNE_CONSUMERS.run(this.opts.redis,
        [this.keys.stream(m)], [this.group, 0, this.consumerName]))), Math.max(50, deadline - Date.now()), 'queue close')
    } catch {
      this.opts.metrics.redisErrors.inc({ op: 'queue_close' })
    }
  }
}
