import { Redis, type RedisOptions } from 'ioredis'

// The ioredis settings the request path relies on (issue 6: Redis down at start, dying, returning).

/** Longest wait between reconnect attempts: L2 hits must come back within 5 s of Redis returning. */
export const MAX_RECONNECT_DELAY_MS = 1000

export function reconnectDelay(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt, 10), MAX_RECONNECT_DELAY_MS)
}

export interface RedisClientOptions {
  /** Give up on one connection attempt after this long (default 1000 ms); reconnecting continues. */
  readonly connectTimeoutMs?: number
  /** Backstop for commands nobody waits for any more (default 2000 ms); callers bound their own waits. */
  readonly commandTimeoutMs?: number
}

/**
 * A client for the embedding cache. `url` may carry AUTH and TLS (`rediss://user:pass@host`).
 * Commands fail at once while disconnected instead of queueing (no offline queue), so a request
 * never waits on a dead Redis; the client keeps reconnecting in the background.
 */
export function createRedisClient(url: string, opts: RedisClientOptions = {}): Redis {
  const options: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: opts.connectTimeoutMs ?? 1000,
    commandTimeout: opts.commandTimeoutMs ?? 2000,
    retryStrategy: reconnectDelay,
  }
  return new Redis(url, options)
}
