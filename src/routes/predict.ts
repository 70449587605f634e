import type { FastifyInstance } from 'fastify'
import { predictBodySchema, predictResponseSchema } from '../predict/predict-schema.ts'
import type { PredictBody } from '../predict/types.ts'
import { clientScope } from '../embedding/client-admission.ts'
import { bodyErrors, internalError, overloaded } from './error-responses.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** When the request arrived (before body parsing): the budget is charged from here. */
    receivedAt: number
    /** receivedAt + budget_ms once the body is read; 0 before. */
    answerBy: number
  }
}

export default async function predictRoutes(app: FastifyInstance): Promise<void> {
  const { config, bundle, predict, metrics } = app
  app.decorateRequest('receivedAt', 0)
  app.decorateRequest('answerBy', 0)
  app.addHook('onRequest', async (request) => { request.receivedAt = Date.now() })
  // Late is judged when the last byte was handed to the socket, not when scoring ended: JSON and
  // the write count against the caller's deadline too.
  app.addHook('onResponse', async (request, reply) => {
    if (reply.statusCode === 200 && request.answerBy > 0 && Date.now() > request.answerBy && !predict.quiet) metrics.lateResponses.inc()
  })
  app.post<{ Body: PredictBody }>('/predict', {
    schema: {
      summary: 'CTR distributions for a list of candidate items',
      body: predictBodySchema({ maxItems: config.MAX_ITEMS, maxBudgetMs: config.MAX_BUDGET_MS }, bundle.manifest),
      response: { 200: predictResponseSchema(bundle.manifest), ...bodyErrors, ...overloaded, ...internalError },
    },
  }, async (request, reply) => {
    request.answerBy = request.receivedAt + (request.body.options?.budget_ms ?? config.BUDGET_MS)
    // A string is sent as is: the JSON was written where the request was scored (predictions-json.ts).
    const json = await clientScope.run(request.ip, () => predict.predictJson(request.body, request.receivedAt))
    return reply.type('application/json; charset=utf-8').send(json)
  })
}
