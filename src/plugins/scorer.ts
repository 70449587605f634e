import fp from 'fastify-plugin'
import { createScorer } from '../scoring/create-scorer.ts'
import type { Scorer } from '../scoring/scorer.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** Head + statistics + JSON of a request: in WEB_CONCURRENCY − 1 scorer threads, or inline when 1. */
    scorer: Scorer
  }
}

export default fp(async (app) => {
  const { config, bundle, fusionHead, vectorSlabs, metrics } = app
  const scorer = await createScorer(bundle, fusionHead, {
    concurrency: config.WEB_CONCURRENCY, intraOpThreads: config.HEAD_INTRA_OP_THREADS,
    ...(vectorSlabs ? {
      slabs: {
        buffers: vectorSlabs.buffers, imageProjections: vectorSlabs.tailBytes(bundle.oov.image.length) > 0,
        onProjected: (rows: number) => metrics.imageProjections.inc(rows),
      },
    } : {}),
  }, app.log)
  app.decorate('scorer', scorer)
  app.addHook('onClose', async () => { await scorer.close() })
}, { name: 'scorer', dependencies: ['config', 'metrics', 'bundle', 'head', 'cache-store'] })
