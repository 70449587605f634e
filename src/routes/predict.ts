import type { FastifyInstance } from 'fastify'
import { predictBodySchema, predictResponseSchema } from '../predict/predict-schema.ts'
import type { PredictBody } from '../predict/types.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** When the request arrived (before body parsing): the budget is charged from here. */
    receivedAt: number
  }
}

export default async function predictRoutes(app: FastifyInstance): Promise<void> {
  const { config, bundle, predict } = app
  app.decorateRequest('receivedAt', 0)
  app.addHook('onRequest', async (request) => { request.receivedAt = Date.now() })
  app.post<{ Body: PredictBody }>('/predict', {
    schema: {
      summary: 'CTR distributions for a list of candidate items',
      body: predictBodySchema({ maxItems: config.MAX_ITEMS }, bundle.manifest),
      response: { 200: predictResponseSchema(bundle.manifest) },
    },
  }, async (request, reply) => {
    // A string is sent as is: the JSON was written where the request was scored (predictions-json.ts).
    const json = await predict.predictJson(request.body, request.receivedAt)
    return reply.type('application/json; charset=utf-8').send(json)
  })
}
