// OpenAPI response schemas shared by the routes: the error body every 4xx/5xx has (see
// error-handler.ts), and which statuses each kind of route can answer.

export const errorBodySchema = {
  type: 'object',
  required: ['statusCode', 'code', 'error', 'message'],
  additionalProperties: false,
  properties: {
    statusCode: { type: 'integer' },
    code: { type: 'string', description: 'CTR_ERR_… (error catalog) or FST_… (fastify)' },
    error: { type: 'string' },
    message: { type: 'string', description: 'starts with the JSON path of the field, then why' },
    field: { type: 'string' },
  },
} as const

const error = (description: string): object => ({ description, ...errorBodySchema })

/** Every route: our own fault. */
export const internalError = { 500: error('Internal error (ours; details in the server log)') } as const

/** Routes that load shedding can turn away (event loop lag past MAX_EVENT_LOOP_DELAY_MS). */
export const overloaded = { 503: error('Overloaded: retry after the Retry-After header') } as const

/** A JSON body: refused shapes, sizes and media types. */
export const bodyErrors = {
  400: error('Bad body: the message names the field and the reason'),
  413: error('Body larger than 8 MiB'),
  415: error('Body is not application/json'),
} as const
