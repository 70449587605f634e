import fp from 'fastify-plugin'
import { type Metrics, createMetrics } from '../metrics.ts'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

/** One Prometheus registry per app (tests build many apps in one process). */
export default fp(async (app) => {
  app.decorate('metrics', createMetrics())
}, { name: 'metrics' })
