// The durable queue, shared by every instance on one Redis or one Redis Cluster. Design and
// decisions: README.md next to this file (BullMQ-like sorted sets per partition, not Streams,
// because workers must take the most-requested job first).
import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import type { BackoffOptions } from './backoff.ts'
import { assertConsumeOptions } from './consume-options.ts'
import { checkEvictionPolicy } from './eviction-policy.ts'
import { EnqueueOutbox, type HeldJob, type OutboxOptions } from './enqueue-outbox.ts'
import { JobTally } from './job-tally.ts'
import { PartitionConsumer, type QueueLog } from './partition-consumer.ts'
import { parseJobKey, partitionKeys, partitionOf, type PartitionKeys } from './partition-keys.ts'
import type { QueueConnection, QueueRedis } from './queue-connection.ts'
import { RecentKeys } from './recent-keys.ts'
import { ENQUEUE, scriptKeys } from './redis-scripts.ts'
import {
  MODALITIES, type CloseOptions, type ConsumeOptions, type EmbedHandler, type EmbedJob, type EmbedQueue,
  type JobMetricOutcome, type Modality, type QueueMetrics,
} from './types.ts'
import { withTimeout } from '../util/settle-within.ts'

export type { QueueConnection, QueueRedis } from './queue-connection.ts'

export interface RedisQueueOptions {
  /** The application's client (Redis or Cluster); the queue opens its own duplicates and never closes it. */
  readonly redis: QueueRedis
  /** REDIS_PREFIX. Keys are `<prefix>:q:{<modality>:<version>:<p>}:<kind>` (partition-keys.ts). */
  readonly prefix: string
  /** Encoder versions this instance holds: it consumes only their partitions. */
  readonly versions: Readonly<Record<Modality, string>>
  readonly metrics: QueueMetrics
  readonly log: QueueLog
  /** Runs per job, the first included, counting only the job's own failures. */
  readonly maxAttempts: number
  readonly backoff: BackoffOptions
  readonly negativeTtlMs: number
  /** Partitions per (modality, encoder version) (QUEUE_PARTITIONS). Default 8. */
  readonly partitions?: number
  /** Most jobs per (modality, encoder version), split evenly over the partitions. Default 100,000. */
  readonly capacity?: number
  /** Lease of a delivery, renewed every third of it while the batch runs (QUEUE_CLAIM_MS). Default 30 s. */
  readonly leaseMs?: number
  /** Expired leases a job may cause before it is failed without running again. Default 10. */
  readonly maxLostLeases?: number
  /** Jobs first queued longer ago are dropped unrun, counted `expired` (QUEUE_MAX_AGE_S); 0 = never. Default 1 h. */
  readonly maxAgeMs?: number
  /** Half-life of a job's demand (QUEUE_PRIORITY_HALF_LIFE_S). Default 60 s. */
  readonly halfLifeMs?: number
  /** Idle consumers look for work this often. Default 250 ms. */
  readonly pollMs?: number
  /** Enqueue gives up waiting after this long (it runs on the request path). Default 250 ms. */
  readonly enqueueTimeoutMs?: number
  /** A key is sent again (raising its demand) at most this often per instance. Default 1 s. */
  readonly resendIntervalMs?: number
  /**
   * Replicas that must acknowledge a new job before it counts queued (QUEUE_WAIT_REPLICAS), at
   * most as many as its master has connected: each ENQUEUE is followed by WAIT on its node; fewer
   * acknowledgements leave the job deferred and it is sent again from the outbox. Default 0 (no WAIT).
   */
  readonly waitReplicas?: number
  /** Bounds and pace of the retry outbox. Default 10,000 jobs, 60 s, backoff 200 ms → 5 s. */
  readonly outbox?: Partial<OutboxOptions>
  /** Unique per process by default (hostname-pid-random); lease tokens start with it. */
  readonly consumerName?: string
  /** `queue` label of the depth gauge. */
  readonly name?: string
  readonly random?: () => number
}

/** Jobs per ENQUEUE call: keeps one script's KEYS list and run time small. */
const ENQUEUE_CHUNK = 200
/** Longest WAIT after an enqueue (and at most half the enqueue timeout): it blocks the producer connection on that node. */
const WAIT_TIMEOUT_MS = 100
const OUTBOX: OutboxOptions = { maxJobs: 10_000, maxAgeMs: 60_000, backoff: { baseMs: 200, maxMs: 5_000 } }
/** One try of one job: the script's code (and whether enough replicas acknowledged it), a failure, or no reply in time. */
type Answer = { kind: 'code'; code: unknown; replicated: boolean; evicted?: string } | { kind: 'failed' } | { kind: 'timeout' }
/** Client states before the first connection is up (ioredis). */
const FIRST_CONNECT = new Set(['wait', 'connecting', 'connect'])
const CODE_OUTCOME = new Map<unknown, JobMetricOutcome>([[1, 'queued'], [3, 'queued'], [0, 'deduplicated'], [-1, 'negative'], [-2, 'dropped'], [2, 'deduplicated']])
/**
 * How long a finished job is remembered so an outbox resend of it is not run twice: the outbox's
 * longest hold plus slack for clock skew between instances and Redis.
 */
function doneWindowMs(outboxMaxAgeMs: number): number {
  return Math.max(65_000, outboxMaxAgeMs + 5_000)
}

export function uniqueConsumerName(): string {
  return `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`
}

export class RedisQueue implements EmbedQueue {
  readonly consumerName: string
  private readonly producer: QueueConnection
  private consumerConn: QueueConnection | undefined
  private readonly recent: RecentKeys
  private readonly outbox: EnqueueOutbox
  private readonly doneWindowMs: number
  /** Per-key enqueue outcomes are logged (debug): read once, the level is fixed at start. */
  private readonly trace: boolean
  private readonly consumers: PartitionConsumer[] = []
  private readonly partitionCache = new Map<string, PartitionKeys[]>()
  private depthTimer: NodeJS.Timeout | undefined
  private lastDepth = 0
  private closed = false
  private closing: Promise<void> | undefined
  private wasReady = false
  /** Enqueues under way: close() lets them finish (each is bounded by about twice the enqueue timeout). */
  private readonly sending = new Set<Promise<number>>()

  constructor(private readonly opts: RedisQueueOptions) {
    const p = opts.partitions ?? 8
    if (!Number.isInteger(p) || p < 1) throw new RangeError(`queue partitions must be an integer ≥ 1, got ${p}`)
    this.consumerName = opts.consumerName ?? uniqueConsumerName()
    this.recent = new RecentKeys(opts.resendIntervalMs ?? 1_000, 100_000)
    this.doneWindowMs = doneWindowMs(opts.outbox?.maxAgeMs ?? OUTBOX.maxAgeMs)
    this.outbox = new EnqueueOutbox({ ...OUTBOX, ...(opts.random ? { random: opts.random } : {}), ...opts.outbox },
      { resend: (held) => this.resend(held), giveUp: (held) => this.giveUp(held) })
    this.trace = opts.log.debug !== undefined && (opts.log.isLevelEnabled?.('debug') ?? false)
    this.producer = this.open()
    this.producer.on('ready', () => { this.wasReady = true })
  }

  private open(): QueueConnection {
    const conn = this.opts.redis.duplicate()
    // ioredis reports each failed reconnect as an 'error' event (printed when nobody listens);
    // the callers see their own failures, so here it is only counted.
    conn.on('error', () => this.opts.metrics.redisErrors.inc({ op: 'queue_connection' }))
    return conn
  }

  /** Resolves once the queue's own connection is ready (tests; the server just starts). */
  async whenReady(timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (this.producer.status !== 'ready') {
      if (Date.now() > deadline) throw new Error(`queue connection not ready within ${timeoutMs} ms (${this.producer.status})`)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }

  /** The P partitions of one (modality, version), built once. */
  private partitionsOf(modality: Modality, version: string): PartitionKeys[] {
    const id = `${modality}:${version}`
    let list = this.partitionCache.get(id)
    if (!list) {
      list = Array.from({ length: this.opts.partitions ?? 8 }, (_, i) => partitionKeys(this.opts.prefix, modality, version, i))
      this.partitionCache.set(id, list)
    }
    return list
  }

  /** The partition of a job: that of the encoder version in its cache key (not necessarily ours). */
  private partitionOfKey(key: string, modality?: Modality): PartitionKeys | undefined {
    const parsed = parseJobKey(key)
    if (!parsed || (modality !== undefined && parsed.modality !== modality)) return undefined
    const list = this.partitionsOf(parsed.modality, parsed.version)
    return list[partitionOf(key, list.length)]
  }

  isRepeat(key: string): boolean {
    return this.recent.has(key)
  }

  async enqueue(jobs: readonly EmbedJob[]): Promise<number> {
    const offer = this.offer(jobs)
    this.sending.add(offer)
    try {
      return await offer
    } finally {
      this.sending.delete(offer)
    }
  }

  private async offer(jobs: readonly EmbedJob[]): Promise<number> {
    const tally = new JobTally()
    try {
      const todo: EmbedJob[] = []
      for (const job of jobs) {
        if (this.closed || !this.partitionOfKey(job.key, job.modality)) this.count(job, 'dropped', tally) // closed, or a key without an encoder version
        else if (this.recent.seen(job.key)) this.count(job, 'deduplicated', tally, 'resend window') // sent within the resend interval
        else todo.push(job)
      }
      if (todo.length === 0) return 0
      if (this.producer.status !== 'ready') await this.firstConnect()
      return await this.send(todo, tally)
    } finally {
      tally.flush(this.opts.metrics)
    }
  }

  /**
   * The queue's connection is opened with the queue: the first enqueues of a process (a CLI run, a
   * request right after start) wait for it, within the enqueue timeout. A connection that was
   * ready and is now reconnecting is an outage: no wait.
   */
  private async firstConnect(): Promise<void> {
    if (this.wasReady || !FIRST_CONNECT.has(this.producer.status)) return
    const deadline = Date.now() + (this.opts.enqueueTimeoutMs ?? 250)
    while (FIRST_CONNECT.has(this.producer.status) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
  }

  /** Sends `jobs` once and records what became of each; returns how many were newly queued. */
  private async send(jobs: readonly EmbedJob[], tally: JobTally): Promise<number> {
    let answers: Answer[]
    if (this.producer.status !== 'ready') {
      // Known to be offline: fail at once rather than hold the request; the outbox retries.
      this.opts.metrics.redisErrors.inc({ op: 'queue_enqueue' })
      answers = jobs.map(() => ({ kind: 'failed' }))
    } else {
      answers = await this.attempt(jobs)
    }
    let accepted = 0
    jobs.forEach((job, i) => { if (this.settleOffer(job, answers[i] ?? { kind: 'failed' }, tally) === 'queued') accepted++ })
    return accepted
  }

  /**
   * One ENQUEUE per partition chunk, all in parallel, under one timeout; with `waitReplicas`, each
   * followed by WAIT on its node. One answer per job: the script's code, a failure, or no reply in time.
   */
  private async attempt(jobs: readonly EmbedJob[]): Promise<Answer[]> {
    const { halfLifeMs = 60_000, capacity = 100_000, partitions = 8, waitReplicas = 0 } = this.opts
    const timeoutMs = this.opts.enqueueTimeoutMs ?? 250
    const perPartition = Math.ceil(capacity / partitions)
    const answers: Answer[] = jobs.map(() => ({ kind: 'timeout' }))
    const groups = new Map<PartitionKeys, number[]>()
    jobs.forEach((job, i) => {
      const p = this.partitionOfKey(job.key) as PartitionKeys // offer() checked it
      const group = groups.get(p)
      if (group) group.push(i)
      else groups.set(p, [i])
    })
    const chunks: Array<{ p: PartitionKeys; idx: number[] }> = []
    for (const [p, idx] of groups) {
      for (let i = 0; i < idx.length; i += ENQUEUE_CHUNK) chunks.push({ p, idx: idx.slice(i, i + ENQUEUE_CHUNK) })
    }
    let errors = 0
    const all = Promise.all(chunks.map(async ({ p, idx }) => {
      const keys = [...scriptKeys(p), ...idx.map((i) => p.negative((jobs[i] as EmbedJob).key))]
      const args = [halfLifeMs, perPartition, this.doneWindowMs, ...idx.flatMap((i) => {
        const job = jobs[i] as EmbedJob
        return [job.key, job.input, this.outbox.get(job.key)?.maybeQueued ? '1' : '0']
      })]
      try {
        const { reply, wanted, acked } = waitReplicas > 0
          ? await ENQUEUE.runAndWait(this.producer, keys, args, waitReplicas, Math.min(WAIT_TIMEOUT_MS, Math.floor(timeoutMs / 2)))
          : { reply: await ENQUEUE.run(this.producer, keys, args), wanted: 0, acked: 0 }
        const codes = Array.isArray(reply) ? reply : []
        idx.forEach((i, j) => {
          const c: unknown = codes[j]
          // {3, key}: queued in place of `key`, the partition's least requested waiting job.
          answers[i] = Array.isArray(c)
            ? { kind: 'code', code: c[0], replicated: acked >= wanted, evicted: String(c[1]) }
            : { kind: 'code', code: c, replicated: acked >= wanted }
        })
      } catch {
        errors++
        for (const i of idx) answers[i] = { kind: 'failed' }
      }
    }))
    try {
      await withTimeout(all, timeoutMs, 'queue enqueue')
    } catch {
      // Timed out: the chunks still unanswered stay `timeout`.
      errors += chunks.filter((c) => answers[c.idx[0] as number]?.kind === 'timeout').length
    }
    if (errors > 0) this.opts.metrics.redisErrors.inc({ op: 'queue_enqueue' }, errors)
    return [...answers] // as of now: a chunk answering after the timeout must not change what was decided
  }

  /**
   * What one try of a job means. Queued, already there, negative or full: answered (a retried
   * job that was maybe queued by an earlier try and is now found there counts queued). A failed
   * try, no reply in time, or a new job that fewer replicas than asked acknowledged: held in the
   * outbox and sent again (counted `deferred` once; `dropped` or `unknown` if it is given up).
   */
  private settleOffer(job: EmbedJob, answer: Answer, tally: JobTally): JobMetricOutcome {
    const held = this.outbox.get(job.key)
    // 3: queued in a full partition in place of its least requested waiting job, gone for good.
    if (answer.kind === 'code' && answer.evicted !== undefined) {
      this.count({ ...job, key: answer.evicted }, 'evicted', tally, `made room for ${job.key}`)
    }
    // A new job, or one an earlier try may have queued, counts once enough replicas hold it.
    // A resend that finds the job there (0) or finished since (2) means an earlier try queued it.
    const earlier = answer.kind === 'code' && (answer.code === 0 || answer.code === 2) && held?.maybeQueued === true
    const ours = answer.kind === 'code' && (answer.code === 1 || answer.code === 3 || earlier)
    if (answer.kind === 'code' && (!ours || answer.replicated || answer.code === 2)) {
      this.outbox.release(job.key)
      const outcome = earlier ? 'queued' : CODE_OUTCOME.get(answer.code) ?? 'dropped'
      this.count(job, outcome, tally)
      if (outcome === 'queued') this.wake(job)
      return outcome
    }
    const failure = answer.kind === 'failed' ? 'dropped' : 'unknown'
    // Not known to be queued: the next miss of this key may try again at once.
    this.recent.forget(job.key)
    if (!this.outbox.hold(job, failure, answer.kind !== 'failed')) {
      this.count(job, failure, tally, 'outbox full or closed')
      return failure
    }
    if (!held) this.count(job, 'deferred', tally, answer.kind === 'code' ? 'not acknowledged by enough replicas' : failure === 'dropped' ? 'failed' : 'no reply in time')
    return 'deferred'
  }

  /** The outbox's retry round: the held jobs sent once more. */
  private async resend(held: readonly HeldJob[]): Promise<void> {
    if (this.producer.status !== 'ready') return // still offline: nothing sent, they stay held
    const tally = new JobTally()
    try {
      await this.send(held.map((h) => h.job), tally)
    } finally {
      tally.flush(this.opts.metrics)
    }
  }

  /** Jobs the outbox gave up (too old, or the queue closed): counted by their last failure. */
  private giveUp(held: readonly HeldJob[]): void {
    const tally = new JobTally()
    for (const h of held) this.count(h.job, h.failure, tally, 'outbox gave up')
    tally.flush(this.opts.metrics)
  }

  /** Counts one job's outcome; with LOG_LEVEL=debug also logs it per key (the fleet bench's trace). */
  private count(job: EmbedJob, outcome: JobMetricOutcome, tally: JobTally, why?: string): void {
    tally.add(job.modality, outcome)
    if (this.trace) this.opts.log.debug?.({ key: job.key, outcome, ...(why ? { why } : {}) }, 'queue: enqueue')
  }

  /** A job of this instance's encoder version was queued here: its idle consumers look at once. */
  private wake(job: EmbedJob): void {
    if (parseJobKey(job.key)?.version !== this.opts.versions[job.modality]) return
    for (const c of this.consumers) if (c.modality === job.modality) c.wake()
  }

  start(handler: EmbedHandler, consume: ConsumeOptions): void {
    if (this.consumers.length > 0) throw new Error('RedisQueue.start() was already called; a queue has one handler')
    if (this.closed) throw new Error('RedisQueue.start() after close()')
    assertConsumeOptions(consume)
    const conn = this.open()
    this.consumerConn = conn
    void this.whenConnected(conn).then(() => checkEvictionPolicy(conn, this.opts.log), () => undefined)
    for (const modality of MODALITIES) {
      const consumer = new PartitionConsumer({
        redis: conn,
        partitions: this.partitionsOf(modality, this.opts.versions[modality]),
        modality,
        consumer: this.consumerName,
        handler,
        consume,
        maxAttempts: this.opts.maxAttempts,
        maxLostLeases: this.opts.maxLostLeases ?? 10,
        backoff: this.opts.backoff,
        negativeTtlMs: this.opts.negativeTtlMs,
        doneWindowMs: this.doneWindowMs,
        leaseMs: this.opts.leaseMs ?? 30_000,
        maxAgeMs: this.opts.maxAgeMs ?? 3_600_000,
        pollMs: this.opts.pollMs ?? 250,
        metrics: this.opts.metrics,
        log: this.opts.log,
        ...(this.opts.random ? { random: this.opts.random } : {}),
      })
      this.consumers.push(consumer)
      consumer.start()
    }
    this.depthTimer = setInterval(() => void this.depth(), 1_000)
    this.depthTimer.unref() // the gauge alone must not keep a process alive
  }

  private async whenConnected(conn: QueueConnection): Promise<void> {
    for (let i = 0; i < 500 && conn.status !== 'ready'; i++) {
      if (this.closed) throw new Error('closed')
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }

  /** Jobs waiting (ready or waiting for a retry) for this instance's encoder versions; on a Redis error, the last known value. */
  async depth(): Promise<number> {
    const conn = this.consumerConn ?? this.producer
    try {
      const parts = MODALITIES.flatMap((m) => this.partitionsOf(m, this.opts.versions[m]))
      const counts = await withTimeout(Promise.all(parts.flatMap((p) => [conn.call('ZCARD', p.wait), conn.call('ZCARD', p.delayed)])),
        this.opts.enqueueTimeoutMs ?? 250, 'queue depth')
      this.lastDepth = counts.reduce<number>((sum, n) => sum + Number(n), 0)
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
      const reply = await withTimeout(Promise.all(keys.map((key) => {
        const p = this.partitionOfKey(key)
        return p ? this.producer.call('EXISTS', p.negative(key)) : Promise.resolve(0)
      })), this.opts.enqueueTimeoutMs ?? 250, 'queue isNegative')
      return reply.map((n) => n === 1)
    } catch {
      this.opts.metrics.redisErrors.inc({ op: 'queue_negative' })
      return keys.map(() => false)
    }
  }

  /**
   * Stops taking jobs (enqueue drops). drain: handle what is waiting until the partitions look
   * empty; otherwise only finish the batches in hand. Batches still running at the timeout are
   * handed back to waiting (no attempt counted). Waiting and delayed jobs stay in Redis for the
   * other instances or the next start. Then the queue's own connections are closed.
   */
  close(opts: CloseOptions): Promise<void> {
    this.closing ??= this.shutDown(opts)
    return this.closing
  }

  private async shutDown({ drain, timeoutMs }: CloseOptions): Promise<void> {
    this.closed = true
    clearInterval(this.depthTimer)
    await Promise.all(this.consumers.map((c) => c.stop(drain, timeoutMs)))
    await Promise.allSettled([...this.sending])
    await this.outbox.close()
    this.consumerConn?.disconnect()
    this.producer.disconnect()
  }
}
