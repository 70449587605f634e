import fp from 'fastify-plugin'
import { type CacheRedis, type RedisState, createCacheRedis, redisState } from '../cache/redis-client.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The Redis client (REDIS_URL) or Redis Cluster client (REDIS_CLUSTER_NODES); null in the embedded mode. */
    redis: CacheRedis | null
    redisState(): RedisState
  }
}

/** The connection to the shared tier; the last resource to close (everything else may still write on close). */
export default fp(async (app) => {
  const redis = createCacheRedis(app.config) ?? null
  app.decorate<CacheRedis | null>('redis', redis)
  app.decorate('redisState', () => redisState(redis))
  if (redis) app.addHook('onClose', async () => { redis.disconnect() })
}, { name: 'redis', dependencies: ['config'] })
