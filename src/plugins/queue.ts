import fp from 'fastify-plugin'
import { createQueue } from '../embedding/create-queue.ts'
import type { EmbedQueue } from '../queue/types.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The queue of embedding jobs: in-process, or durable and shared on Redis. */
    queue: EmbedQueue
  }
}

/**
 * The queue, for producers (the predict service, `score --enqueue-misses`). Consuming is the
 * embedding-consumer plugin's job. Close is idempotent: when a consumer closed the queue already
 * (draining it before the encoders stop), this close returns at once.
 */
export default fp(async (app) => {
  const enc = app.bundle.manifest.encoders
  const queue = createQueue({
    config: app.config, redis: app.redis ?? undefined, metrics: app.metrics, log: app.log,
    versions: { image: enc.image.version, text: enc.text.version },
  })
  app.decorate('queue', queue)
  app.addHook('onClose', async () => { await queue.close({ drain: false, timeoutMs: 10_000 }) })
}, { name: 'queue', dependencies: ['config', 'bundle', 'metrics', 'redis'] })
