import type { PipelineCaller, RedisCaller } from './lua-script.ts'

// The queue's narrow view of ioredis. Both a `Redis` and a `Cluster` satisfy it (Cluster routes
// `call` by the first key, and every queue script's keys share one slot).

/** One connection the queue owns (a duplicate of the application's client). */
export interface QueueConnection extends RedisCaller, PipelineCaller {
  readonly status: string
  disconnect(): void
  on(event: 'error', listener: (err: Error) => void): unknown
  on(event: 'ready', listener: () => void): unknown
}

/**
 * The application's client. The queue never sends on it: it opens its own connections with
 * `duplicate()` (same address, credentials and fail-fast options), so request-path L2 reads never
 * wait behind enqueues or consumer scripts.
 */
export interface QueueRedis {
  readonly status: string
  duplicate(): QueueConnection
}
