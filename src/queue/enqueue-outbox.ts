import { backoffDelayMs, type BackoffOptions } from './backoff.ts'
import type { EmbedJob } from './types.ts'

/** Why a job is held: its enqueue failed (`dropped`) or its reply or replica acknowledgement never came (`unknown`). */
export type HeldFailure = 'dropped' | 'unknown'

export interface HeldJob {
  readonly job: EmbedJob
  /** When it was first held (ms): past the outbox's maximum age it is given up. */
  readonly since: number
  failure: HeldFailure
  /** Some try may have queued it (a timed-out reply, or a write no replica acknowledged yet). */
  maybeQueued: boolean
}

export interface OutboxOptions {
  /** Most jobs held; a job past it is given up at once. */
  readonly maxJobs: number
  /** A job held longer is given up at the next retry round. */
  readonly maxAgeMs: number
  /** Delay between retry rounds, growing while rounds leave jobs behind. */
  readonly backoff: BackoffOptions
  readonly random?: () => number
}

export interface OutboxSender {
  /** Sends the held jobs again; it calls `release` or `hold` for each one. Never rejects. */
  resend(held: readonly HeldJob[]): Promise<void>
  /** Jobs given up (too old, or the outbox closed): counted final by their last failure. */
  giveUp(held: readonly HeldJob[]): void
}

/**
 * Enqueues that failed or went unanswered, sent again in rounds with backoff until they are
 * answered (Kafka producer style: retries bounded by a delivery timeout and a buffer size). Only
 * one round runs at a time; each resends every held job at most once. Bounded in jobs and age,
 * so nothing a caller sends makes unbounded work: what does not fit or outlives the age is given
 * up and counted by its failure.
 */
export class EnqueueOutbox {
  private readonly held = new Map<string, HeldJob>()
  private timer: NodeJS.Timeout | undefined
  /** The round under way, if any: close() waits for it. */
  private current: Promise<void> | undefined
  private rounds = 0
  private closed = false

  constructor(private readonly opts: OutboxOptions, private readonly sender: OutboxSender) {}

  /** Holds `job` for a retry (or updates it if held); false when the outbox is full or closed. */
  hold(job: EmbedJob, failure: HeldFailure, maybeQueued: boolean): boolean {
    const had = this.held.get(job.key)
    if (had) {
      had.failure = failure
      had.maybeQueued ||= maybeQueued
    } else {
      if (this.closed || this.held.size >= this.opts.maxJobs) return false
      this.held.set(job.key, { job, since: Date.now(), failure, maybeQueued })
    }
    this.schedule()
    return true
  }

  /** The job was answered (queued, already there, negative or refused for good): no more retries. */
  release(key: string): void {
    this.held.delete(key)
  }

  /** What a held job's retry learns of earlier tries (undefined when it is not held). */
  get(key: string): HeldJob | undefined {
    return this.held.get(key)
  }

  private schedule(): void {
    if (this.timer || this.current || this.closed || this.held.size === 0) return
    this.timer = setTimeout(() => { this.current = this.round() }, backoffDelayMs(++this.rounds, this.opts.backoff, this.opts.random))
    // A live server has other handles; a CLI closes the queue, which runs a last round.
    this.timer.unref()
  }

  private async round(): Promise<void> {
    this.timer = undefined
    try {
      this.expire(Date.now() - this.opts.maxAgeMs)
      if (this.held.size > 0) await this.sender.resend([...this.held.values()])
    } finally {
      this.current = undefined
      if (this.held.size === 0) this.rounds = 0
      this.schedule()
    }
  }

  private expire(before: number): void {
    const old = [...this.held.values()].filter((h) => h.since < before)
    for (const h of old) this.held.delete(h.job.key)
    if (old.length > 0) this.sender.giveUp(old)
  }

  /** One last round for what is held (bounded by the sender's own timeout), then the rest is given up. */
  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.timer)
    this.timer = undefined
    await this.current
    if (this.held.size > 0) await this.sender.resend([...this.held.values()])
    const left = [...this.held.values()]
    this.held.clear()
    if (left.length > 0) this.sender.giveUp(left)
  }
}
