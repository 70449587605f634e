import fp from 'fastify-plugin'
import { makeJobHandler } from '../embedding/job-handler.ts'

/**
 * Background embedding: this instance consumes the queue through the encoders into the cache
 * store. Registered after the encoders, so it closes before them: the durable queue hands unfinished
 * jobs back to Redis (another instance takes them), the in-process queue finishes its jobs.
 */
export default fp(async (app) => {
  const { config, queue, embedder, store, log } = app
  queue.start(makeJobHandler(embedder, store, config.IMAGE_FETCH_TIMEOUT_MS + 1000, log), {
    concurrency: config.EMBED_CONCURRENCY, batchSize: config.EMBED_BATCH_SIZE, batchWaitMs: 5,
  })
  app.addHook('onClose', async () => { await queue.close({ drain: app.redis === null, timeoutMs: 10_000 }) })
}, { name: 'embedding-consumer', dependencies: ['config', 'queue', 'encoders', 'cache-store'] })
