import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.ts'
import bundlePlugin from './bundle.ts'
import cacheStorePlugin from './cache-store.ts'
import configPlugin from './config.ts'
import embeddingConsumerPlugin from './embedding-consumer.ts'
import encodersPlugin from './encoders.ts'
import headPlugin from './head.ts'
import metricsPlugin from './metrics.ts'
import predictPlugin from './predict.ts'
import queuePlugin from './queue.ts'
import scorerPlugin from './scorer.ts'
import redisPlugin from './redis.ts'

export {
  bundlePlugin, cacheStorePlugin, configPlugin, embeddingConsumerPlugin, encodersPlugin, headPlugin, metricsPlugin,
  predictPlugin, queuePlugin, redisPlugin, scorerPlugin,
}

/**
 * The resources every command needs to embed, on an app with the config plugin: metrics, bundle,
 * Redis, the cache store and the encoders. Registration order is close order reversed.
 */
export async function registerEmbedding(app: FastifyInstance): Promise<void> {
  await app.register(metricsPlugin)
  await app.register(bundlePlugin)
  await app.register(redisPlugin)
  await app.register(cacheStorePlugin)
  await app.register(encodersPlugin)
}

/** What scores a request on an app with the embedding resources: the head and the scorer threads. */
export async function registerScoring(app: FastifyInstance): Promise<void> {
  await app.register(headPlugin)
  await app.register(scorerPlugin)
}

/** The server: everything, with misses queued and consumed by this instance. */
export async function registerServing(app: FastifyInstance, config: Config): Promise<void> {
  await app.register(configPlugin, { config })
  await registerEmbedding(app)
  await registerScoring(app)
  await app.register(queuePlugin)
  await app.register(embeddingConsumerPlugin)
  await app.register(predictPlugin)
}
