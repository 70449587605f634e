import type { Config } from '../config.ts'
import type { Metrics } from '../metrics.ts'
import { MemoryQueue } from '../queue/memory-queue.ts'
import type { QueueLog } from '../queue/partition-consumer.ts'
import type { QueueRedis } from '../queue/queue-connection.ts'
import { RedisQueue } from '../queue/redis-queue.ts'
import type { EmbedQueue, Modality } from '../queue/types.ts'

const BACKOFF = { baseMs: 500, maxMs: 60_000 }
const MAX_ATTEMPTS = 5
// A permanent failure (404, refused address, undecodable image) is not retried for this long.
const NEGATIVE_TTL_MS = 15 * 60_000

export interface CreateQueueDeps {
  readonly config: Config
  /** One Redis or a Redis Cluster client (the queue duplicates it); undefined: embedded mode. */
  readonly redis: QueueRedis | undefined
  readonly metrics: Metrics
  /** The bundle's encoder versions (`manifest.encoders.<modality>.version`): the partitions this instance consumes. */
  readonly versions: Readonly<Record<Modality, string>>
  readonly log: QueueLog
}

/**
 * The embedded default is an in-process bounded queue; with Redis (or a Redis Cluster), a durable
 * partitioned queue shared by every instance (deduplicated across instances, survives restarts,
 * scoped by encoder version).
 */
export function createQueue(d: CreateQueueDeps): EmbedQueue {
  const common = { maxAttempts: MAX_ATTEMPTS, backoff: BACKOFF, negativeTtlMs: NEGATIVE_TTL_MS, metrics: d.metrics }
  if (d.redis) {
    return new RedisQueue({
      ...common, redis: d.redis, prefix: d.config.REDIS_PREFIX, versions: d.versions, log: d.log, name: 'redis',
      // Not QUEUE_CAPACITY: that bounds one process's memory (the CLI sets it to 1); the shared
      // queue keeps its own bound (100,000 jobs per modality and encoder version).
      partitions: d.config.QUEUE_PARTITIONS, leaseMs: d.config.QUEUE_CLAIM_MS, waitReplicas: d.config.QUEUE_WAIT_REPLICAS,
      maxAgeMs: d.config.QUEUE_MAX_AGE_S * 1000, halfLifeMs: d.config.QUEUE_PRIORITY_HALF_LIFE_S * 1000,
    })
  }
  return new MemoryQueue({
    ...common, capacity: d.config.QUEUE_CAPACITY, negativeMaxKeys: 100_000, name: 'memory',
    halfLifeMs: d.config.QUEUE_PRIORITY_HALF_LIFE_S * 1000,
    ...(d.config.QUEUE_MAX_AGE_S > 0 ? { maxAgeMs: d.config.QUEUE_MAX_AGE_S * 1000 } : {}),
  })
}
