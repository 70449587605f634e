import fp from 'fastify-plugin'
import { allowedHosts } from '../config.ts'
import { EmbeddingService } from '../embedding/embedding-service.ts'
import type { EncoderPool } from '../embedding/encoder-pool.ts'
import { createEncoderPools } from '../embedding/encoder-pools.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The encoder worker pools (image: fetch + decode + CNN; text: tokenizer + LSTM). */
    encoders: { readonly image: EncoderPool; readonly text: EncoderPool }
    /** Micro-batched, single-flight embedding into the cache store. */
    embedder: EmbeddingService
  }
}

export default fp(async (app) => {
  const { config, bundle, store, metrics, log } = app
  const enc = bundle.manifest.encoders
  const { imagePool, textPool } = await createEncoderPools(bundle, {
    imageWorkers: config.EMBED_WORKERS, ortThreads: config.ORT_INTRA_OP_THREADS, nice: config.EMBED_NICE,
    imageLoading: {
      spec: enc.image.input,
      fetch: { timeoutMs: config.IMAGE_FETCH_TIMEOUT_MS, maxBytes: config.IMAGE_MAX_BYTES, maxRedirects: 3, allowedHosts: allowedHosts(config) },
      limitInputPixels: config.IMAGE_MAX_PIXELS,
      hostConcurrency: config.IMAGE_HOST_CONCURRENCY,
    },
  }, log)
  app.decorate('encoders', { image: imagePool, text: textPool })
  app.decorate('embedder', new EmbeddingService({ imagePool, textPool, sink: store, metrics }))
  app.addHook('onClose', async () => { await Promise.all([imagePool.close(), textPool.close()]) })
}, { name: 'encoders', dependencies: ['config', 'bundle', 'metrics', 'cache-store'] })
