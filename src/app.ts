import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import underPressure from '@fastify/under-pressure'
import type { Config } from './config.ts'
import { CtrError } from './errors.ts'
import { type Runtime, createRuntime } from './runtime.ts'
import { installErrorHandler } from './routes/error-handler.ts'
import { installMethodNotAllowed } from './routes/method-not-allowed.ts'
import healthRoutes from './routes/health.ts'
import predictRoutes from './routes/predict.ts'

declare module 'fastify' {
  interface FastifyInstance {
    runtime: Runtime
  }
}

export interface AppOptions {
  readonly config: Config
  /** A runtime built elsewhere (tests share one); otherwise the app builds and owns its own. */
  readonly runtime?: Runtime
}

const runtimePlugin = fp<AppOptions>(async (app, opts) => {
  const owned = opts.runtime === undefined
  const rt = opts.runtime ?? await createRuntime(opts.config, app.log)
  app.decorate('runtime', rt)
  if (owned) app.addHook('onClose', async () => rt.close())
}, { name: 'runtime' })

/** The fastify app as a plugin: runtime (bundle, caches, queue, encoders), load shedding, routes, docs. */
const app: FastifyPluginAsync<AppOptions> = async (fastify: FastifyInstance, opts: AppOptions) => {
  installErrorHandler(fastify)
  installMethodNotAllowed(fastify)
  await fastify.register(runtimePlugin, opts)
  await fastify.register(underPressure, {
    maxEventLoopDelay: opts.config.MAX_EVENT_LOOP_DELAY_MS,
    retryAfter: 1,
    exposeStatusRoute: false,
    customError: CtrError.bind(null, 'OVERLOADED', []) as unknown as new () => Error,
  })
  await fastify.register(swagger, {
    openapi: { info: { title: 'ctrserve', description: 'Multimodal CTR prediction', version: '1' } },
  })
  await fastify.register(swaggerUi, { routePrefix: '/docs' })
  await fastify.register(healthRoutes)
  await fastify.register(predictRoutes)
}

export default fp(app, { name: 'ctrserve' })
