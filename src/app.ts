import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import underPressure from '@fastify/under-pressure'
import type { Config } from './config.ts'
import { CtrError } from './errors.ts'
import { installErrorHandler } from './routes/error-handler.ts'
import { installMethodNotAllowed } from './routes/method-not-allowed.ts'
import healthRoutes from './routes/health.ts'
import predictRoutes from './routes/predict.ts'
import { registerServing } from './plugins/index.ts'

export interface AppOptions {
  readonly config: Config
}

/**
 * The fastify app as a plugin: one plugin per resource (config, metrics, bundle, redis, cache
 * store, encoders, head, queue, embedding consumer, predict service; src/plugins/), load
 * shedding, routes, docs. Each resource closes itself, in the reverse order of registration.
 */
const app: FastifyPluginAsync<AppOptions> = async (fastify: FastifyInstance, opts: AppOptions) => {
  installErrorHandler(fastify)
  installMethodNotAllowed(fastify)
  await registerServing(fastify, opts.config)
  await fastify.register(underPressure, {
    maxEventLoopDelay: opts.config.MAX_EVENT_LOOP_DELAY_MS,
    retryAfter: 1,
    exposeStatusRoute: false,
    // Counted by reason, then the error handler answers 503 OVERLOADED with Retry-After.
    pressureHandler: async (_req, _reply, type) => {
      fastify.metrics.shed.inc({ reason: type })
      throw new CtrError('OVERLOADED', [])
    },
  })
  await fastify.register(swagger, {
    openapi: { info: { title: 'ctrserve', description: 'Multimodal CTR prediction', version: '1' } },
  })
  await fastify.register(swaggerUi, { routePrefix: '/docs' })
  await fastify.register(healthRoutes)
  await fastify.register(predictRoutes)
}

export default fp(app, { name: 'ctrserve' })
