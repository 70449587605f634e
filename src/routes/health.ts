import type { FastifyInstance } from 'fastify'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Read by @fastify/under-pressure: a route-level handler that returns nothing lets the request through. */
    pressureHandler?: () => void
  }
}

// Load shedding must not reach liveness (an orchestrator would restart a merely busy instance) nor
// metrics (overload is when they are needed); /readyz is shed, which takes the instance out of rotation.
const notShed = { pressureHandler: (): void => undefined }

export default async function healthRoutes(app: FastifyInstance): Promise<void> {
  app.get('/healthz', { schema: { summary: 'Liveness' }, config: notShed }, async () => ({ status: 'ok' }))
  app.get('/readyz', { schema: { summary: 'Readiness: bundle loaded, Redis reachable when configured' } }, async (_req, reply) => {
    const m = app.bundle.manifest
    const redis = app.redisState()
    const ready = redis !== 'down'
    return reply.code(ready ? 200 : 503).send({ ready, bundle: `${m.name}@${m.version}`, redis })
  })
  app.get('/metrics', { schema: { summary: 'Prometheus metrics', hide: false }, config: notShed }, async (_req, reply) => {
    void reply.type(app.metrics.registry.contentType)
    return app.metrics.registry.metrics()
  })
  app.get('/model', { schema: { summary: 'Bundle name, version, encoders and the fields the model knows' } }, async () => {
    const m = app.bundle.manifest
    return {
      name: m.name,
      version: m.version,
      encoders: {
        image: { version: m.encoders.image.version, arch: m.encoders.image.arch, dim: m.encoders.image.output.dim },
        text: { version: m.encoders.text.version, arch: m.encoders.text.arch, dim: m.encoders.text.output.dim },
      },
      fields: m.fields.map((f) => ({ name: f.name, scope: f.scope, type: f.type, multi: f.multi ?? false })),
      mixture_components: m.mdn.k,
      quantiles: m.mdn.quantiles,
    }
  })
}
