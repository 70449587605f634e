// One modality's consumers of the durable queue: `concurrency` loops, each taking a batch from
// the partitions of this instance's encoder version (visited round-robin from a shared cursor, so
// the loops of one instance, and the instances of a fleet, spread over all partitions), running
// it under a renewed lease, and settling it.
import { concurrencyOf } from './consume-options.ts'
import { backoffDelayMs, type BackoffOptions } from './backoff.ts'
import { JobTally } from './job-tally.ts'
import { LeaseRenewal } from './lease-renewal.ts'
import type { RedisCaller } from './lua-script.ts'
import type { PartitionKeys } from './partition-keys.ts'
import { SETTLE, TAKE, scriptKeys } from './redis-scripts.ts'
import { runBatch } from './run-batch.ts'
import { byPartition, parseTakeReply, type LeasedJob } from './take-reply.ts'
import type { ConsumeOptions, EmbedHandler, JobOutcome, Modality, QueueMetrics } from './types.ts'

export interface QueueLog {
  info(o: object, m: string): void
  warn(o: object, m: string): void
  /** Per-key traces (enqueue outcomes, jobs done), only when debug is enabled (pino has both). */
  debug?(o: object, m: string): void
  isLevelEnabled?(level: string): boolean
}

export interface PartitionConsumerDeps {
  readonly redis: RedisCaller
  /** The P partitions of this modality at this instance's encoder version. */
  readonly partitions: readonly PartitionKeys[]
  readonly modality: Modality
  /** Unique per process; lease tokens are `<consumer>:<n>`. */
  readonly consumer: string
  readonly handler: EmbedHandler
  readonly consume: ConsumeOptions
  readonly maxAttempts: number
  readonly maxLostLeases: number
  readonly backoff: BackoffOptions
  readonly negativeTtlMs: number
  /** How long SETTLE remembers a finished job (redis-queue.ts doneWindowMs). */
  readonly doneWindowMs: number
  readonly leaseMs: number
  readonly maxAgeMs: number
  readonly pollMs: number
  readonly metrics: QueueMetrics
  readonly log: QueueLog
  readonly random?: () => number
}

type Mode = 'run' | 'drain' | 'stop'
type Action = { job: LeasedJob; action: 'ok' | 'retry' | 'fail' | 'release'; arg: string | number; reason?: string }

/** An idle poll waits pollMs, doubling up to this many times pollMs while nothing comes. */
const MAX_IDLE_FACTOR = 8
/** Backoff of a loop while Redis is unreachable. */
const OUTAGE_BACKOFF: BackoffOptions = { baseMs: 100, maxMs: 5_000 }
/** Most due retries, expired leases and old jobs one TAKE call handles per partition. */
const UPKEEP_LIMIT = 200
/** A settle that fails is tried again this often before the lease is left to expire. */
const SETTLE_TRIES = 3

export class PartitionConsumer {
  private readonly loops: Promise<void>[] = []
  private mode: Mode = 'run'
  private cursor: number
  private seq = 0
  /** Deliveries running now, by lease token: handed back at close if they outlive the timeout. */
  private readonly held = new Map<string, readonly LeasedJob[]>()
  /** Their lease renewals: a batch abandoned at close (its handler may never answer) must not keep renewing. */
  private readonly renewals = new Map<string, LeaseRenewal>()
  /** Wakes sleeping loops when the consumer stops, so no timer outlives close(). */
  private readonly stopped = new AbortController()
  /** Sleeping loops' wake-up calls: a local enqueue, work found, or stop. */
  private readonly sleepers = new Set<() => void>()
  /** While every loop is idle, only one polls (the poller); the others sleep until woken. */
  private poller = false
  /** Jobs done are logged per key (debug): the fleet bench's trace. */
  private readonly trace: boolean

  constructor(private readonly deps: PartitionConsumerDeps) {
    this.cursor = Math.floor((deps.random ?? Math.random)() * deps.partitions.length)
    this.trace = deps.log.isLevelEnabled?.('debug') ?? false
  }

  get modality(): Modality {
    return this.deps.modality
  }

  /** New work may be waiting (queued by this process, or found by a loop): sleeping loops look now. */
  wake(): void {
    for (const wakeUp of [...this.sleepers]) wakeUp()
  }

  start(): void {
    for (let i = 0; i < concurrencyOf(this.deps.consume, this.deps.modality); i++) this.loops.push(this.loop())
  }

  /**
   * drain: keep handling until the partitions look empty; otherwise finish the batches in hand.
   * After `timeoutMs` the batches still running are released: handed back to waiting with no
   * attempt counted (their late results settle nothing).
   */
  async stop(drain: boolean, timeoutMs: number): Promise<void> {
    this.mode = drain ? 'drain' : 'stop'
    if (!drain) this.stopped.abort()
    this.wake() // draining loops must look once more, sleeping ones return
    let timer: NodeJS.Timeout | undefined
    await Promise.race([Promise.all(this.loops), new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
    clearTimeout(timer)
    this.mode = 'stop'
    this.stopped.abort()
    const abandoned = [...this.held]
    this.held.clear()
    for (const [token] of abandoned) this.renewals.get(token)?.stop()
    await Promise.all(abandoned.map(([token, jobs]) => this.settle(token, jobs.map((job) => ({ job, action: 'release' as const, arg: '' })))))
  }

  /** Sleeps `ms` (undefined: until woken); a wake() or stop ends it early. */
  private pause(ms: number | undefined, wakeable = false): Promise<void> {
    const signal = this.stopped.signal
    if (signal.aborted) return Promise.resolve()
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        signal.removeEventListener('abort', done)
        this.sleepers.delete(done)
        resolve()
      }
      const timer = ms === undefined ? undefined : setTimeout(done, ms)
      signal.addEventListener('abort', done)
      if (wakeable || ms === undefined) this.sleepers.add(done)
    })
  }

  /** A method, not an inline comparison: `mode` changes while a loop awaits. */
  private stopping(): boolean {
    return this.mode === 'stop'
  }

  private async loop(): Promise<void> {
    let failures = 0
    let idle = 0
    while (!this.stopping()) {
      try {
        const { token, jobs } = await this.take()
        failures = 0
        if (jobs.length === 0) {
          if (this.mode === 'drain') return
          await this.idle(idle++)
          continue
        }
        idle = 0
        this.wake() // there may be more: the sleeping loops take too
        await this.run(token, jobs)
      } catch {
        if (this.stopping()) return
        this.deps.metrics.redisErrors.inc({ op: 'queue_consume' })
        await this.pause(backoffDelayMs(++failures, OUTAGE_BACKOFF, this.deps.random))
      }
    }
  }

  /**
   * Nothing found. One idle loop polls, waiting pollMs doubling to MAX_IDLE_FACTOR × pollMs (due
   * retries and expired leases are only moved by a take, so someone must look); the others sleep
   * until woken by a local enqueue or by a loop that found work. A job queued by this process is
   * taken at once; one queued by another process (whose own consumers were woken) within the
   * longest idle wait.
   */
  private async idle(rounds: number): Promise<void> {
    const { pollMs } = this.deps
    if (this.poller) return this.pause(undefined)
    this.poller = true
    try {
      await this.pause(Math.min(pollMs * 2 ** rounds, pollMs * MAX_IDLE_FACTOR), true)
    } finally {
      this.poller = false
    }
  }

  /**
   * Fills one batch. First pass: at most ceil(batchSize / P) jobs from each partition, so the
   * batch holds the top jobs of every partition rather than the top and the tail of one (the
   * order across partitions approximates one global order). Second pass: the room left goes to
   * the partitions that had more. The first partition visited rotates from batch to batch.
   */
  private async take(): Promise<{ token: string; jobs: LeasedJob[] }> {
    const { partitions, consume } = this.deps
    const token = `${this.deps.consumer}:${++this.seq}`
    const jobs: LeasedJob[] = []
    const tally = new JobTally()
    const quota = Math.max(1, Math.ceil(consume.batchSize / partitions.length))
    const first = this.cursor++
    const more: PartitionKeys[] = []
    let failure: unknown
    const takeFrom = async (p: PartitionKeys, want: number): Promise<number> => {
      try {
        const r = parseTakeReply(p, await TAKE.run(this.deps.redis, scriptKeys(p),
          [want, this.deps.leaseMs, token, this.deps.maxAgeMs, UPKEEP_LIMIT]))
        if (r.expired > 0) tally.add(this.deps.modality, 'expired', r.expired)
        if (r.malformed > 0) this.deps.metrics.redisErrors.inc({ op: 'queue_malformed' }, r.malformed)
        if (r.reclaimed > 0) this.deps.log.info({ partition: p.wait, jobs: r.reclaimed }, 'queue: leases expired, jobs back to waiting')
        jobs.push(...r.jobs)
        return r.jobs.length
      } catch (err) {
        failure ??= err
        return 0
      }
    }
    for (let i = 0; i < partitions.length && jobs.length < consume.batchSize && !this.stopping(); i++) {
      const p = partitions[(first + i) % partitions.length] as PartitionKeys
      const want = Math.min(quota, consume.batchSize - jobs.length)
      if (await takeFrom(p, want) === want) more.push(p)
    }
    for (const p of more) {
      if (jobs.length >= consume.batchSize || this.stopping()) break
      await takeFrom(p, consume.batchSize - jobs.length)
    }
    tally.flush(this.deps.metrics)
    // Jobs already leased are run even if another partition failed; otherwise report the failure.
    if (jobs.length === 0 && failure !== undefined) throw failure instanceof Error ? failure : new Error(String(failure))
    return { token, jobs }
  }

  private async run(token: string, jobs: readonly LeasedJob[]): Promise<void> {
    const { modality, maxLostLeases } = this.deps
    this.held.set(token, jobs)
    const renewal = new LeaseRenewal(this.deps.redis, token, jobs, this.deps.leaseMs,
      () => this.deps.metrics.redisErrors.inc({ op: 'queue_renew' }))
    renewal.start()
    this.renewals.set(token, renewal)
    try {
      // A job whose leases keep expiring kills or hangs its consumers: stop it without running it.
      const spent = jobs.filter((j) => j.lostLeases > maxLostLeases)
      const runnable = jobs.filter((j) => j.lostLeases <= maxLostLeases)
      const outcomes = runnable.length === 0
        ? []
        : await runBatch(this.deps.handler, runnable.map((j) => ({ key: j.key, modality, input: j.input })))
      if (!this.held.has(token)) return // released at close while it ran
      const lost: JobOutcome = { ok: false, permanent: true, reason: `lease expired ${maxLostLeases + 1} times (consumers crashed or hung on it)` }
      await this.settle(token, [
        ...runnable.map((job, i) => this.actionOf(job, outcomes[i] ?? lost)),
        ...spent.map((job) => this.actionOf(job, lost)),
      ])
    } finally {
      renewal.stop()
      this.renewals.delete(token)
      this.held.delete(token)
    }
  }

  private actionOf(job: LeasedJob, outcome: JobOutcome): Action {
    if (outcome.ok) return { job, action: 'ok', arg: '' }
    const attempt = job.attempts + 1 // this run, 1-based
    if (!outcome.permanent && attempt < this.deps.maxAttempts) {
      return { job, action: 'retry', arg: backoffDelayMs(attempt, this.deps.backoff, this.deps.random) }
    }
    const reason = outcome.reason || 'failed'
    return { job, action: 'fail', arg: reason, reason }
  }

  /** Per partition, one SETTLE; counts only what this delivery still held. */
  private async settle(token: string, actions: readonly Action[]): Promise<void> {
    const tally = new JobTally()
    await Promise.all(byPartition(actions.map((a) => ({ ...a, partition: a.job.partition }))).map(async ([p, group]) => {
      const keys = [...scriptKeys(p), ...group.map((a) => p.negative(a.job.key))]
      const args: Array<string | number> = [token, this.deps.negativeTtlMs, this.deps.doneWindowMs]
      for (const a of group) args.push(a.job.key, a.action, a.arg)
      const reply = await this.settleWithRetry(keys, args)
      group.forEach((a, i) => {
        if (reply[i] !== 1) return
        if (a.action === 'ok' && this.trace) this.deps.log.debug?.({ key: a.job.key }, 'queue: job done')
        if (a.action === 'fail') {
          this.deps.log.warn({ key: a.job.key, reason: a.reason, attempts: a.job.attempts + 1, lostLeases: a.job.lostLeases }, 'embedding job failed for good')
        }
        if (a.action !== 'release') tally.add(this.deps.modality, a.action === 'ok' ? 'done' : a.action === 'retry' ? 'retried' : 'failed')
      })
    }))
    tally.flush(this.deps.metrics)
  }

  /** A settle lost to a Redis blip is tried again; after that the lease expires and the job is re-run. */
  private async settleWithRetry(keys: string[], args: Array<string | number>): Promise<unknown[]> {
    for (let tries = 1; ; tries++) {
      try {
        const reply = await SETTLE.run(this.deps.redis, keys, args)
        return Array.isArray(reply) ? reply : []
      } catch {
        this.deps.metrics.redisErrors.inc({ op: 'queue_settle' })
        if (tries >= SETTLE_TRIES) return []
        await new Promise((resolve) => setTimeout(resolve, 100 * tries))
      }
    }
  }
}
