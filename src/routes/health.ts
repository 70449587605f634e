import type { FastifyInstance } from 'fastify'
import { internalError, overloaded } from './error-responses.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Read by @fastify/under-pressure: a route-level handler that returns nothing lets the request through. */
    pressureHandler?: () => void
  }
}

// Load shedding must not reach liveness (an orchestrator would restart a merely busy instance) nor
// metrics (overload is when they are needed); /readyz is shed, which takes the instance out of rotation.
const notShed = { pressureHandler: (): void => undefined }

const readiness = {
  type: 'object',
  required: ['ready', 'bundle', 'redis'],
  properties: { ready: { type: 'boolean' }, bundle: { type: 'string' }, redis: { type: 'string', enum: ['absent', 'ready', 'down'] } },
} as const

const modelSchema = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    version: { type: 'string' },
    encoders: { type: 'object', additionalProperties: { type: 'object', properties: { version: { type: 'string' }, arch: { type: 'string' }, dim: { type: 'integer' } } } },
    fields: {
      type: 'array',
      items: { type: 'object', properties: { name: { type: 'string' }, scope: { type: 'string' }, type: { type: 'string' }, multi: { type: 'boolean' } } },
    },
    mixture_components: { type: 'integer' },
    quantiles: { type: 'object', additionalProperties: { type: 'number' } },
  },
} as const

const schemas = {
  healthz: { summary: 'Liveness', response: { 200: { type: 'object', properties: { status: { type: 'string', enum: ['ok'] } } }, ...internalError } },
  readyz: {
    summary: 'Readiness: bundle loaded, Redis reachable when configured',
    response: { 200: readiness, 503: { description: 'Not ready (the same body), or overloaded (error body)', anyOf: [readiness, overloaded[503]] }, ...internalError },
  },
  metrics: {
    summary: 'Prometheus metrics',
    response: { 200: { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } }, ...internalError },
  },
  model: { summary: 'Bundle name, version, encoders and the fields the model knows', response: { 200: modelSchema, ...overloaded, ...internalError } },
}

export default async function healthRoutes(app: FastifyInstance): Promise<void> {
  app.get('/healthz', { schema: schemas.healthz, config: notShed }, async () => ({ status: 'ok' }))
  app.get('/readyz', { schema: schemas.readyz }, async (_req, reply) => {
    const m = app.bundle.manifest
    const redis = app.redisState()
    const ready = redis !== 'down'
    return reply.code(ready ? 200 : 503).send({ ready, bundle: `${m.name}@${m.version}`, redis })
  })
  app.get('/metrics', { schema: schemas.metrics, config: notShed }, async (_req, reply) => {
    void reply.type(app.metrics.registry.contentType)
    return app.metrics.registry.metrics()
  })
  app.get('/model', { schema: schemas.model }, async () => {
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
