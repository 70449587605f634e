import fp from 'fastify-plugin'
import { type Bundle, loadBundle } from '../bundle/load-bundle.ts'
import { tinyWeightsAdvice } from '../onnx/tiny-weights.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The model bundle of MODEL_DIR, its file hashes checked. */
    bundle: Bundle
  }
}

export default fp(async (app) => {
  const bundle = await loadBundle(app.config.MODEL_DIR)
  if (Object.keys(bundle.tinyWeights).length > 0) {
    app.log.warn({ tinyWeights: bundle.tinyWeights }, `bundle has ${tinyWeightsAdvice(bundle.dir)}`)
  }
  app.decorate('bundle', bundle)
}, { name: 'bundle', dependencies: ['config'] })
