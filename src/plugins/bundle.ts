import fp from 'fastify-plugin'
import { type Bundle, loadBundle } from '../bundle/load-bundle.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The model bundle of MODEL_DIR, its file hashes checked. */
    bundle: Bundle
  }
}

export default fp(async (app) => {
  app.decorate('bundle', await loadBundle(app.config.MODEL_DIR))
}, { name: 'bundle', dependencies: ['config'] })
