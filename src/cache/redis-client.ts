import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis'
import type { Config } from '../config.ts'
import { parseClusterSeeds } from './cluster-seeds.ts'

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

/** One Redis (REDIS_URL) or a Redis Cluster (REDIS_CLUSTER_NODES); L2, the queue and the CLI take either. */
export type CacheRedis = Redis | Cluster

/**
 * A Redis Cluster client with the same fail-fast rules: no offline queue, bounded reconnects.
 * Routing (MOVED/ASK, slot refresh after a failover) is ioredis'; auto-pipelining groups the
 * commands issued in one tick by the node that serves their slot (queue traffic, L2 writes). One
 * request's L2 reads are one script call per master, in parallel (l2.ts, DESIGN.md "Fleet mode").
 */
export function createClusterClient(seeds: string, opts: RedisClientOptions = {}): Cluster {
  const s = parseClusterSeeds(seeds)
  const options: ClusterOptions = {
    enableOfflineQueue: false,
    // The whole cluster unreachable: retry the seeds with the same bounded delays as one Redis.
    clusterRetryStrategy: reconnectDelay,
    // A dead master's slots are re-read this often; with node timeout + election, L2 hits on its
    // slots come back within a few seconds of the replica's promotion.
    slotsRefreshInterval: 2000,
    slotsRefreshTimeout: 1000,
    retryDelayOnFailover: 100,
    enableAutoPipelining: true,
    // Blocking reads (queue read loops) must not hold an auto-pipeline open. L2's per-master read
    // script (EVAL of GET_LOCAL, l2.ts) is one command per master already and goes out at once;
    // ioredis' auto-pipeline also cannot carry a command sent with callBuffer().
    autoPipeliningIgnoredCommands: ['xreadgroup', 'xread', 'blpop', 'brpop', 'bzpopmin', 'bzpopmax', 'blmove', 'eval'],
    redisOptions: {
      maxRetriesPerRequest: 1,
      connectTimeout: opts.connectTimeoutMs ?? 1000,
      commandTimeout: opts.commandTimeoutMs ?? 2000,
      ...(s.username ? { username: s.username } : {}),
      ...(s.password !== undefined ? { password: s.password } : {}),
      ...(s.tls ? { tls: {} } : {}),
    },
  }
  return new Cluster(s.nodes.map((n) => ({ host: n.host, port: n.port })), options)
}

/** The configured client: a cluster, one Redis, or none (embedded mode). */
export function createCacheRedis(config: Pick<Config, 'REDIS_URL' | 'REDIS_CLUSTER_NODES'>): CacheRedis | undefined {
  if (config.REDIS_CLUSTER_NODES) return createClusterClient(config.REDIS_CLUSTER_NODES)
  if (config.REDIS_URL) return createRedisClient(config.REDIS_URL)
  return undefined
}

export type RedisState = 'absent' | 'ready' | 'down'

/**
 * For /readyz. A cluster client stays 'ready' while one master fails over (its slots read as
 * misses for a few seconds; L1 and OOV answer meanwhile), so the instance stays in rotation;
 * it is 'down' only when no node of the cluster can be reached.
 */
export function redisState(redis: CacheRedis | null | undefined): RedisState {
  if (!redis) return 'absent'
  return redis.status === 'ready' ? 'ready' : 'down'
}
