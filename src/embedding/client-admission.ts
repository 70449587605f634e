import { AsyncLocalStorage } from 'node:async_hooks'
import type { EmbedJob } from '../queue/types.ts'

// Per-client admission to the miss queue: one caller sending only unique URLs must not fill the
// queue for everybody. Each client (the request's address, carried by `clientScope` from the route
// to the enqueue) has a token bucket: `burst` jobs at once, then `ratePerS` per second; jobs beyond
// are not queued (the item is served OOV and queued again on its next miss) and are counted.
// Repeats (keys the queue already holds or has just sent) are passed on without a token.
// Bound: one client adds at most burst + ratePerS × t jobs in t seconds. Work without a client
// (the command-line tools) is not limited.

/** The client of the request being served: set by the /predict route, read at enqueue time. */
export const clientScope = new AsyncLocalStorage<string>()

export interface AdmissionOptions {
  readonly ratePerS: number
  readonly burst: number
  /** Buckets remembered (least recently used forgotten first; a forgotten client starts full). */
  readonly maxClients: number
  readonly metrics: { readonly queueAdmission: { inc(labels: { result: 'admitted' | 'throttled' }, value?: number): void } }
  /** Called per throttled job (the per-key trace at LOG_LEVEL=debug); absent: nothing per key. */
  readonly onThrottled?: (job: EmbedJob) => void
  readonly now?: () => number
}

type Enqueue = { enqueue(jobs: EmbedJob[]): Promise<number>; isRepeat?(key: string): boolean }

interface Bucket { tokens: number; at: number }

export function withClientAdmission(inner: Enqueue, opts: AdmissionOptions): Enqueue {
  if (opts.ratePerS <= 0) return inner
  const buckets = new Map<string, Bucket>()
  const now = opts.now ?? Date.now
  const take = (client: string, wanted: number): number => {
    const t = now()
    const b = buckets.get(client) ?? { tokens: opts.burst, at: t }
    buckets.delete(client) // re-inserted last: Map order is the recency order
    b.tokens = Math.min(opts.burst, b.tokens + ((t - b.at) / 1000) * opts.ratePerS)
    b.at = t
    const granted = Math.min(wanted, Math.floor(b.tokens))
    b.tokens -= granted
    buckets.set(client, b)
    if (buckets.size > opts.maxClients) buckets.delete(buckets.keys().next().value as string)
    return granted
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
      const granted = fresh.length > 0 ? take(client, fresh.length) : 0
      if (granted > 0) opts.metrics.queueAdmission.inc({ result: 'admitted' }, granted)
      if (granted < fresh.length) {
        opts.metrics.queueAdmission.inc({ result: 'throttled' }, fresh.length - granted)
        if (opts.onThrottled) for (const job of fresh.slice(granted)) opts.onThrottled(job)
      }
      const sent = granted === fresh.length ? jobs : [...repeats, ...fresh.slice(0, granted)]
      return sent.length === 0 ? Promise.resolve(0) : inner.enqueue(sent)
    },
  }
}
