import type { Cluster, Redis } from 'ioredis'
import type { CacheRedis } from '../cache/redis-client.ts'
import type { Config } from '../config.ts'
import type { Metrics } from '../metrics.ts'
import { MemoryQueue } from '../queue/memory-queue.ts'
import { type QueueRedis, RedisQueue } from '../queue/redis-queue.ts'
import type { EmbedQueue } from '../queue/types.ts'

const BACKOFF = { baseMs: 500, maxMs: 60_000 }
const MAX_ATTEMPTS = 5
// A permanent failure (404, refused address, undecodable image) is not retried for this long.
const NEGATIVE_TTL_MS = 15 * 60_000

/**
 * The embedded default is an in-process bounded queue; with Redis, a durable Streams queue shared by
 * every instance on that Redis (deduplicated across instances, survives restarts).
 */
export function createQueue(d: { config: Config; redis: CacheRedis | undefined; metrics: Metrics }): EmbedQueue {
  const common = { maxAttempts: MAX_ATTEMPTS, backoff: BACKOFF, negativeTtlMs: NEGATIVE_TTL_MS, metrics: d.metrics }
  if (d.redis?.isCluster === true) {
    // One hash tag keeps every queue key (streams, markers, scripts' keys) in one slot.
    return new RedisQueue({ ...common, redis: clusterAsQueueRedis(d.redis as Cluster), prefix: `{${d.config.REDIS_PREFIX}:q}`, name: 'redis' })
  }
  if (d.redis) {
    return new RedisQueue({ ...common, redis: d.redis as Redis, prefix: `${d.config.REDIS_PREFIX}:q`, name: 'redis' })
  }
  return new MemoryQueue({
    ...common, capacity: d.config.QUEUE_CAPACITY, negativeMaxKeys: 100_000, name: 'memory',
    halfLifeMs: d.config.QUEUE_PRIORITY_HALF_LIFE_S * 1000,
    ...(d.config.QUEUE_MAX_AGE_S > 0 ? { maxAgeMs: d.config.QUEUE_MAX_AGE_S * 1000 } : {}),
  })
}

/**
 * The queue opens its read loops with Redis#duplicate(options); a Cluster duplicates with
 * (startup nodes, options). Same commands otherwise (`call` routes by key).
 */
function clusterAsQueueRedis(cluster: Cluster): QueueRedis {
  const adapter = {
    call: cluster.call.bind(cluster),
    get status() { return cluster.status },
    duplicate: (o: { commandTimeout?: number }) => cluster.duplicate([], { redisOptions: { ...cluster.options.redisOptions, ...o } }),
  }
  return adapter as unknown as QueueRedis
}
