import fp from 'fastify-plugin'
import { type Bundle, loadBundle } from '../bundle/load-bundle.ts'
import { TINY_WEIGHT } from '../onnx/tiny-weights.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The model bundle of MODEL_DIR, its file hashes checked. */
    bundle: Bundle
  }
}

export default fp(async (app) => {
  const bundle = await loadBundle(app.config.MODEL_DIR)
  if (Object.keys(bundle.tinyWeights).length > 0) {
    app.log.warn({ tinyWeights: bundle.tinyWeights }, `bundle has ONNX weights below ${TINY_WEIGHT}: on Intel CPUs their subnormal arithmetic can make the head and the encoders many times slower; set them to zero with \`python -m training.tiny_weights ${bundle.dir}\` (README "Subnormal weights")`)
  }
  app.decorate('bundle', bundle)
}, { name: 'bundle', dependencies: ['config'] })
