// The embedded default (no REDIS_URL): a bounded in-process queue. Jobs live only in this
// process; a restart loses them, which is acceptable because a lost job only means the item
// stays OOV until it is requested again.
import { backoffDelayMs, type BackoffOptions } from './backoff.ts'
import { JobTally } from './job-tally.ts'
import { NegativeCache } from './negative-cache.ts'
import { runBatch } from './run-batch.ts'
import { bumpDemand } from './demand-score.ts'
import { PriorityHeap } from './priority-heap.ts'
import { assertConsumeOptions, concurrencyOf } from './consume-options.ts'
import {
  MODALITIES, type CloseOptions, type ConsumeOptions, type EmbedHandler, type EmbedJob, type EmbedQueue,
  type JobOutcome, type Modality, type QueueMetrics,
} from './types.ts'

export interface MemoryQueueOptions {
  /**
   * Most jobs waiting (ready or waiting for a retry). A job offered to a full queue takes the place
   * of the least requested waiting job when it outranks it (that one is counted `evicted`); else
   * it is dropped.
   */
  readonly capacity: number
  /** Attempts per job, the first included, before a transient failure is treated as final. */
  readonly maxAttempts: number
  readonly backoff: BackoffOptions
  /** How long a failed key is skipped by `enqueue`. */
  readonly negativeTtlMs: number
  /** Bound on remembered failed keys (oldest forgotten first). */
  readonly negativeMaxKeys: number
  readonly metrics: QueueMetrics
  /** `queue` label of the depth gauge. */
  readonly name?: string
  /** Jitter source; tests may pin it. */
  readonly random?: () => number
  /** Half-life of a job's demand (see demand-score.ts); default 60 s (QUEUE_PRIORITY_HALF_LIFE_S). */
  readonly halfLifeMs?: number
  /** Jobs first queued longer ago than this are dropped unrun, counted `expired`; default none (QUEUE_MAX_AGE_S). */
  readonly maxAgeMs?: number
  /** Clock for demand and age; tests may pin it. */
  readonly now?: () => number
}

interface Entry {
  readonly job: EmbedJob
  /** 1-based number of the attempt this entry will make. */
  readonly attempt: number
  /** When it became ready; a partial batch waits `batchWaitMs` from the top entry's. */
  readyAt: number
  /** When the job was first queued: its age for QUEUE_MAX_AGE_S. */
  readonly firstQueuedAt: number
  /** Decayed request count (log domain, demand-score.ts): the most requested job runs first. */
  priority: number
  heapIndex: number
  readonly seq: number
  /** Its place in the lowest-first heap (the eviction order). */
  readonly low: LowItem
}

/** An entry seen from the bottom (negated priority): the heap of these pops the least requested first. */
interface LowItem { priority: number; heapIndex: number; readonly seq: number; readonly key: string }

type EntryFields = Pick<Entry, 'attempt' | 'readyAt' | 'firstQueuedAt' | 'priority' | 'seq'>

function newEntry(job: EmbedJob, f: EntryFields): Entry {
  return {
    job, attempt: f.attempt, readyAt: f.readyAt, firstQueuedAt: f.firstQueuedAt, priority: f.priority, seq: f.seq,
    heapIndex: -1, low: { priority: -f.priority, heapIndex: -1, seq: -f.seq, key: job.key },
  }
}

const DEFAULT_HALF_LIFE_MS = 60_000

type State = 'open' | 'draining' | 'closed'

export class MemoryQueue implements EmbedQueue {
  private readonly ready: Record<Modality, PriorityHeap<Entry>> = { image: new PriorityHeap(), text: new PriorityHeap() }
  /** The same ready entries, least requested on top: what a full queue evicts. */
  private readonly lowest: Record<Modality, PriorityHeap<LowItem>> = { image: new PriorityHeap(), text: new PriorityHeap() }
  /** Entries ready or waiting for a retry, by key: a repeated miss raises their priority. */
  private readonly waitingByKey = new Map<string, Entry>()
  private readonly now: () => number
  private readonly halfLifeMs: number
  private sweepTimer: NodeJS.Timeout | undefined
  private seq = 0
  private readonly inFlight: Record<Modality, number> = { image: 0, text: 0 }
  /** Jobs of the batches running now (for `snapshot`). */
  private readonly runningJobs = new Set<EmbedJob>()
  private readonly retries = new Map<string, { readonly entry: Entry; readonly timer: NodeJS.Timeout }>()
  /** Keys queued, waiting for a retry or in flight: the single-flight set. */
  private readonly known = new Set<string>()
  private readonly negative: NegativeCache
  private readonly waiters: Array<{ done: () => boolean; resolve: () => void }> = []
  private handler: EmbedHandler | undefined
  private consume: ConsumeOptions | undefined
  private waitTimer: NodeJS.Timeout | undefined
  private state: State = 'open'
  private closing: Promise<void> | undefined

  constructor(private readonly opts: MemoryQueueOptions) {
    this.negative = new NegativeCache(opts.negativeMaxKeys)
    this.now = opts.now ?? Date.now
    this.halfLifeMs = opts.halfLifeMs ?? DEFAULT_HALF_LIFE_MS
    const maxAge = opts.maxAgeMs
    if (maxAge !== undefined && Number.isFinite(maxAge)) {
      // Jobs the workers never reach must still leave: sweep a few times per maximum age.
      this.sweepTimer = setInterval(() => this.expireOld(), Math.min(Math.max(maxAge / 4, 100), 5_000)).unref()
    }
  }

  isRepeat(key: string): boolean {
    return this.known.has(key)
  }

  async enqueue(jobs: readonly EmbedJob[]): Promise<number> {
    const tally = new JobTally()
    const now = this.now()
    let accepted = 0
    for (const job of jobs) {
      if (this.state !== 'open') tally.add(job.modality, 'dropped')
      else if (this.known.has(job.key)) {
        this.raise(job.key, now)
        tally.add(job.modality, 'deduplicated')
      } else if (this.negative.has(job.key)) tally.add(job.modality, 'negative')
      else if (!this.roomFor(bumpDemand(undefined, now, this.halfLifeMs), tally)) tally.add(job.modality, 'dropped')
      else {
        this.known.add(job.key)
        const entry = newEntry(job, { attempt: 1, readyAt: now, firstQueuedAt: now, priority: bumpDemand(undefined, now, this.halfLifeMs), seq: this.seq++ })
        this.waitingByKey.set(job.key, entry)
        this.pushReady(entry)
        tally.add(job.modality, 'queued')
        accepted++
      }
    }
    tally.flush(this.opts.metrics)
    this.changed()
    this.pump()
    return accepted
  }

  /** One more request for a queued key; a key in flight has no entry and keeps its place. */
  private raise(key: string, now: number): void {
    const entry = this.waitingByKey.get(key)
    if (!entry) return
    entry.priority = bumpDemand(entry.priority, now, this.halfLifeMs)
    entry.low.priority = -entry.priority
    this.ready[entry.job.modality].raised(entry)
    this.lowest[entry.job.modality].changed(entry.low)
  }

  private pushReady(entry: Entry): void {
    this.ready[entry.job.modality].push(entry)
    this.lowest[entry.job.modality].push(entry.low)
  }

  /**
   * Whether a new job of this priority may be queued: yes below capacity; when full, only in the
   * place of the least requested ready job, if it ranks lower (a tail of one-off items must not
   * keep out the items traffic keeps asking for). Retries waiting for their backoff are not evicted.
   */
  private roomFor(priority: number, tally: JobTally): boolean {
    if (this.waiting() < this.opts.capacity) return true
    const [a, b] = [this.lowest.image.peek(), this.lowest.text.peek()]
    const low = a && b ? (a.priority >= b.priority ? a : b) : a ?? b
    const entry = low ? this.waitingByKey.get(low.key) : undefined
    if (!entry || entry.priority >= priority) return false
    this.ready[entry.job.modality].remove(entry)
    this.lowest[entry.job.modality].remove(entry.low)
    this.forget(entry, 'evicted', tally)
    return true
  }

  private expired(entry: Entry, now: number): boolean {
    return this.opts.maxAgeMs !== undefined && now - entry.firstQueuedAt > this.opts.maxAgeMs
  }

  private expireOld(): void {
    const now = this.now()
    const tally = new JobTally()
    for (const modality of MODALITIES) {
      for (const entry of this.ready[modality].removeWhere((e) => this.expired(e, now))) {
        this.lowest[modality].remove(entry.low)
        this.forget(entry, 'expired', tally)
      }
    }
    tally.flush(this.opts.metrics)
    this.changed()
  }

  /** The entry leaves the queue unrun. */
  private forget(entry: Entry, outcome: 'expired' | 'dropped' | 'evicted', tally: JobTally): void {
    this.known.delete(entry.job.key)
    this.waitingByKey.delete(entry.job.key)
    tally.add(entry.job.modality, outcome)
  }

  start(handler: EmbedHandler, opts: ConsumeOptions): void {
    if (this.handler) throw new Error('MemoryQueue.start() was already called; a queue has one handler')
    assertConsumeOptions(opts)
    this.handler = handler
    this.consume = opts
    this.pump()
  }

  async depth(): Promise<number> {
    return this.waiting()
  }

  async isNegative(keys: readonly string[]): Promise<boolean[]> {
    return keys.map((key) => this.negative.has(key))
  }

  close(opts: CloseOptions): Promise<void> {
    this.closing ??= this.shutDown(opts)
    return this.closing
  }

  private async shutDown({ drain, timeoutMs }: CloseOptions): Promise<void> {
    if (drain && this.handler) {
      this.state = 'draining'
      this.pump() // partial batches no longer wait for company
      await this.until(() => this.waiting() + this.running() === 0, timeoutMs)
    }
    this.state = 'closed'
    this.dropWaiting()
    // Batches still running after the timeout are abandoned: their results are still recorded.
    await this.until(() => this.running() === 0, drain ? 0 : timeoutMs)
  }

  // --- Saved across a restart with the L1 snapshot (src/cache/l1-snapshot.ts) ---

  /** Every job not done yet: running, ready, or waiting for a retry. Take it before `close` drops them. */
  snapshot(): EmbedJob[] {
    return [
      ...this.runningJobs, ...this.ready.image.values().map((e) => e.job), ...this.ready.text.values().map((e) => e.job),
      ...[...this.retries.values()].map((r) => r.entry.job),
    ]
  }

  /** Re-queues jobs saved by `snapshot` in an earlier process (same rules as `enqueue`). */
  restore(jobs: readonly EmbedJob[]): Promise<number> {
    return this.enqueue(jobs)
  }

  private waiting(): number {
    return this.ready.image.size + this.ready.text.size + this.retries.size
  }

  private running(): number {
    return this.inFlight.image + this.inFlight.text
  }

  /** Starts every batch that may start now and arms a timer for the earliest partial batch. */
  private pump(): void {
    const handler = this.handler
    const consume = this.consume
    if (!handler || !consume || this.state === 'closed') return
    const now = this.now()
    let nextDue = Infinity
    for (const modality of MODALITIES) {
      const queue = this.ready[modality]
      const concurrency = concurrencyOf(consume, modality)
      while (queue.size > 0 && this.inFlight[modality] < concurrency) {
        const due = (queue.peek()?.readyAt ?? now) + consume.batchWaitMs
        if (queue.size < consume.batchSize && now < due && this.state === 'open') {
          nextDue = Math.min(nextDue, due)
          break
        }
        const batch = this.take(queue, consume.batchSize, now)
        if (batch.length > 0) void this.runEntries(handler, modality, batch)
      }
    }
    clearTimeout(this.waitTimer)
    this.waitTimer = Number.isFinite(nextDue) ? setTimeout(() => this.pump(), nextDue - now) : undefined
  }

  /** The `n` most requested entries; expired ones met on the way are dropped. */
  private take(queue: PriorityHeap<Entry>, n: number, now: number): Entry[] {
    const batch: Entry[] = []
    const tally = new JobTally()
    while (batch.length < n) {
      const entry = queue.pop()
      if (!entry) break
      this.lowest[entry.job.modality].remove(entry.low)
      if (this.expired(entry, now)) { this.forget(entry, 'expired', tally); continue }
      this.waitingByKey.delete(entry.job.key)
      batch.push(entry)
    }
    tally.flush(this.opts.metrics)
    return batch
  }

  private async runEntries(handler: EmbedHandler, modality: Modality, entries: Entry[]): Promise<void> {
    this.inFlight[modality]++
    for (const e of entries) this.runningJobs.add(e.job)
    this.changed()
    const outcomes = await runBatch(handler, entries.map((e) => e.job))
    this.inFlight[modality]--
    for (const e of entries) this.runningJobs.delete(e.job)
    const tally = new JobTally()
    entries.forEach((entry, i) => this.settle(entry, outcomes[i] ?? { ok: true }, tally))
    tally.flush(this.opts.metrics)
    this.changed()
    this.pump()
  }

  private settle(entry: Entry, outcome: JobOutcome, tally: JobTally): void {
    const { job } = entry
    if (outcome.ok) {
      this.known.delete(job.key)
      tally.add(job.modality, 'done')
    } else if (!outcome.permanent && entry.attempt < this.opts.maxAttempts) {
      if (this.state === 'closed') {
        this.known.delete(job.key)
        tally.add(job.modality, 'dropped')
        return
      }
      tally.add(job.modality, 'retried')
      this.scheduleRetry(newEntry(job, { ...entry, attempt: entry.attempt + 1, readyAt: 0 }))
    } else {
      this.known.delete(job.key)
      this.negative.add(job.key, this.opts.negativeTtlMs)
      tally.add(job.modality, 'failed')
    }
  }

  /** Retries stay in the single-flight set while they wait, and may exceed `capacity` by the batches in flight. */
  private scheduleRetry(next: Entry): void {
    const delay = backoffDelayMs(next.attempt - 1, this.opts.backoff, this.opts.random)
    const timer = setTimeout(() => {
      this.retries.delete(next.job.key)
      next.readyAt = this.now()
      if (this.expired(next, next.readyAt)) {
        const tally = new JobTally()
        this.forget(next, 'expired', tally)
        tally.flush(this.opts.metrics)
      } else this.pushReady(next)
      this.changed()
      this.pump()
    }, delay)
    this.retries.set(next.job.key, { entry: next, timer })
    this.waitingByKey.set(next.job.key, next)
  }

  private dropWaiting(): void {
    clearTimeout(this.waitTimer)
    clearInterval(this.sweepTimer)
    const tally = new JobTally()
    for (const modality of MODALITIES) {
      this.lowest[modality].clear()
      for (const entry of this.ready[modality].clear()) this.forget(entry, 'dropped', tally)
    }
    for (const { entry, timer } of this.retries.values()) {
      clearTimeout(timer)
      this.forget(entry, 'dropped', tally)
    }
    this.retries.clear()
    tally.flush(this.opts.metrics)
    this.changed()
  }

  /** Resolves when `done()` holds or after `timeoutMs`, whichever is first. */
  private until(done: () => boolean, timeoutMs: number): Promise<void> {
    if (done() || timeoutMs <= 0) return Promise.resolve()
    return new Promise((resolve) => {
      const finish = (): void => {
        clearTimeout(timer)
        const i = this.waiters.indexOf(waiter)
        if (i >= 0) this.waiters.splice(i, 1)
        resolve()
      }
      const waiter = { done, resolve: finish }
      const timer = setTimeout(finish, timeoutMs)
      this.waiters.push(waiter)
    })
  }

  private changed(): void {
    this.opts.metrics.queueDepth.set({ queue: this.opts.name ?? 'memory' }, this.waiting())
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const waiter = this.waiters[i]
      if (waiter && waiter.done()) waiter.resolve()
    }
  }
}
