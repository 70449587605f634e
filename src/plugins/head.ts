import fp from 'fastify-plugin'
import { Head } from '../fusion/head.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The fusion head's ONNX session (main thread). `head` would shadow fastify's HEAD route method. */
    fusionHead: Head
  }
}

export default fp(async (app) => {
  const head = await Head.load(app.bundle, app.config.HEAD_INTRA_OP_THREADS)
  app.decorate('fusionHead', head)
  app.addHook('onClose', async () => { await head.close() })
}, { name: 'head', dependencies: ['config', 'bundle'] })
