import type { FastifyInstance } from 'fastify'
import { predictBodySchema, predictResponseSchema } from '../predict/predict-schema.ts'
import type { PredictBody } from '../predict/types.ts'

export default async function predictRoutes(app: FastifyInstance): Promise<void> {
  const rt = app.runtime
  app.post<{ Body: PredictBody }>('/predict', {
    schema: {
      summary: 'CTR distributions for a list of candidate items',
      body: predictBodySchema({ maxItems: rt.config.MAX_ITEMS }),
      response: { 200: predictResponseSchema(rt.bundle.manifest) },
    },
  }, async (request) => rt.predict.predict(request.body, Date.now()))
}
