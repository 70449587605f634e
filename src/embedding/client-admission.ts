import { AsyncLocalStorage } from 'node:async_hooks'
import type { EmbedJob } from '../queue/types.ts'

// Per-client admission to the miss queue: one caller sending only unique URLs must not fill the
// queue for everybody. Each client (the request's address, carried by `clientScope` from the route
// to the enqueue) has a token bucket: `burst` jobs at once, then `ratePerS` per second; jobs beyond
// are not queued (the item is served OOV and queued again on its next miss) and are counted.
// Repeats (keys the queue already holds or has just sent) are passed on without a token.
// Bound: one client adds at most burst + ratePerS × t jobs in t seconds. Work without a client
// (the command-line tools) is not limited.
//
// Many clients together are bound by one more bucket for the whole instance (`instance`): in bench
// scenario 4 with no admission, 200 req/s of 100 new items offered 40,000 jobs a second, enqueueing
// them took Redis half a core, and 71–98 % of the answers came late.

/** The client of the request being served: set by the /predict route, read at enqueue time. */
export const clientScope = new AsyncLocalStorage<string>()

export interface AdmissionOptions {
  /** Per client; 0: no per-client bound. */
  readonly ratePerS: number
  readonly burst: number
  /** Every client together; absent or rate 0: no instance bound. */
  readonly instance?: { readonly ratePerS: number; readonly burst: number }
  /** Buckets remembered (least recently used forgotten first; a forgotten client starts full). */
  readonly maxClients: number
  readonly metrics: { readonly queueAdmission: { inc(labels: { result: 'admitted' | 'throttled' | 'throttled_instance' }, value?: number): void } }
  /** Called per throttled job (the per-key trace at LOG_LEVEL=debug); absent: nothing per key. */
  readonly onThrottled?: (job: EmbedJob) => void
  readonly now?: () => number
}

type Enqueue = { enqueue(jobs: EmbedJob[]): Promise<number>; isRepeat?(key: string): boolean }

/** A token bucket: `burst` at once, refilled at `ratePerS`. */
class Bucket {
  private at: number
  constructor(private readonly ratePerS: number, private readonly burst: number, t: number, private tokens = burst) { this.at = t }

  available(t: number): number {
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.at) / 1000) * this.ratePerS)
    this.at = t
    return Math.floor(this.tokens)
  }

  spend(n: number): void { this.tokens -= n }
}

export function withClientAdmission(inner: Enqueue, opts: AdmissionOptions): Enqueue {
  const perClient = opts.ratePerS > 0
  const whole = opts.instance && opts.instance.ratePerS > 0 ? opts.instance : undefined
  if (!perClient && !whole) return inner
  const buckets = new Map<string, Bucket>()
  const now = opts.now ?? Date.now
  const instance = whole ? new Bucket(whole.ratePerS, whole.burst, now()) : undefined
  const clientBucket = (client: string, t: number): Bucket => {
    const b = buckets.get(client) ?? new Bucket(opts.ratePerS, opts.burst, t)
    buckets.delete(client) // re-inserted last: Map order is the recency order
    buckets.set(client, b)
    if (buckets.size > opts.maxClients) buckets.delete(buckets.keys().next().value as string)
    return b
  }
  /** Jobs granted, and how many of the rest the client's own bound refused (the others: the instance's). */
  const take = (client: string, wanted: number): { granted: number; byClient: number } => {
    const t = now()
    const c = perClient ? clientBucket(client, t) : undefined
    const forClient = c ? Math.min(wanted, c.available(t)) : wanted
    const granted = instance ? Math.min(forClient, instance.available(t)) : forClient
    c?.spend(granted)
    instance?.spend(granted)
    return { granted, byClient: wanted - forClient }
  }
  return {
    enqueue(jobs) {
      const client = clientScope.getStore()
      if (client === undefined || jobs.length === 0) return inner.enqueue(jobs)
      // Repeats of keys already queued or just sent cost the queue nothing new: not charged (they
      // still go through, so an item asked for again gains priority).
      const repeats: EmbedJob[] = []
      const fresh: EmbedJob[] = []
      for (const job of jobs) (inner.isRepeat?.(job.key) ? repeats : fresh).push(job)
      const { granted, byClient } = fresh.length > 0 ? take(client, fresh.length) : { granted: 0, byClient: 0 }
      if (granted > 0) opts.metrics.queueAdmission.inc({ result: 'admitted' }, granted)
      if (byClient > 0) opts.metrics.queueAdmission.inc({ result: 'throttled' }, byClient)
      if (fresh.length - granted - byClient > 0) opts.metrics.queueAdmission.inc({ result: 'throttled_instance' }, fresh.length - granted - byClient)
      if (granted < fresh.length && opts.onThrottled) for (const job of fresh.slice(granted)) opts.onThrottled(job)
      const sent = granted === fresh.length ? jobs : [...repeats, ...fresh.slice(0, granted)]
      return sent.length === 0 ? Promise.resolve(0) : inner.enqueue(sent)
    },
  }
}
