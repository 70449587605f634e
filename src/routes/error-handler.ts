import { STATUS_CODES } from 'node:http'
import type { FastifyError, FastifyInstance } from 'fastify'
import { CtrError, ERRORS } from '../errors.ts'

interface ErrorBody {
  statusCode: number
  code: string
  error: string
  message: string
  field?: string
}

/** Every error leaves as `{statusCode, code, error, message, field?}`; 5xx never leak internals. */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | CtrError | Error, request, reply) => {
    let body: ErrorBody
    if ('validation' in err && err.validation) {
      const first = err.validation[0]
      const field = `body${first?.instancePath ?? ''}`
      const reason = first ? describe(first.keyword, first.message ?? 'is invalid', first.params) : err.message
      body = { statusCode: 400, code: ERRORS.BAD_BODY.code, error: 'Bad Request', message: `${field}: ${reason}`, field }
    } else if (err instanceof CtrError && err.statusCode >= 400 && err.statusCode < 500) {
      body = { statusCode: err.statusCode, code: err.code, error: STATUS_CODES[err.statusCode] ?? 'Bad Request', message: err.message, field: err.message.split(':')[0] }
    } else if (err instanceof CtrError && err.statusCode === 503) {
      body = { statusCode: 503, code: err.code, error: 'Service Unavailable', message: err.message }
      void reply.header('retry-after', '1')
    } else if ('statusCode' in err && typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      // fastify's own 4xx (413 body too large, 415 media type, 400 bad JSON): the status text, not always 'Bad Request'.
      body = { statusCode: err.statusCode, code: 'code' in err && typeof err.code === 'string' ? err.code : ERRORS.BAD_BODY.code, error: STATUS_CODES[err.statusCode] ?? 'Bad Request', message: `body: ${err.message}`, field: 'body' }
    } else {
      request.log.error({ err }, 'request failed')
      body = { statusCode: 500, code: ERRORS.INTERNAL.code, error: 'Internal Server Error', message: 'internal error; see the server log' }
    }
    void reply.code(body.statusCode).send(body)
  })
}

function describe(keyword: string, message: string, params: Record<string, unknown>): string {
  if (keyword === 'additionalProperties') {
    const name = String(params.additionalProperty)
    // Field maps accept any name up to 64 characters (predict-schema.ts FIELD_NAME): a longer one is the reason.
    if ([...name].length > 64) return `property name ${JSON.stringify(name.slice(0, 20))}… is longer than 64 characters`
    return `unknown property ${JSON.stringify(params.additionalProperty)}`
  }
  if (keyword === 'pattern' && typeof params.pattern === 'string' && params.pattern.includes('[hH]')) return 'must be an http(s) URL'
  if (keyword === 'enum' && Array.isArray(params.allowedValues)) return `must be one of ${params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`
  return message
}
