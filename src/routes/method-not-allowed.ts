import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { CtrError } from '../errors.ts'

/**
 * A known path with a method it does not have answers 405 with `Allow` (RFC 9110 §15.5.6), an
 * unknown path 404; both in the error catalog's body. Routes are recorded as they are added, so
 * this must be installed before any route.
 */
export function installMethodNotAllowed(app: FastifyInstance): void {
  const methods = new Map<string, Set<string>>()
  app.addHook('onRoute', (route) => {
    const set = methods.get(route.url) ?? new Set<string>()
    for (const m of Array.isArray(route.method) ? route.method : [route.method]) set.add(m.toUpperCase())
    methods.set(route.url, set)
  })
  const refuse = async (request: FastifyRequest, reply: FastifyReply): Promise<never> => {
    const path = request.url.split('?')[0] ?? ''
    const allowed = methods.get(path)
    if (allowed === undefined || allowed.has(request.method)) {
      throw new CtrError('NOT_FOUND', [`no route ${request.method} ${path.slice(0, 200)}`])
    }
    const allow = [...allowed].sort().join(', ')
    void reply.header('allow', allow)
    throw new CtrError('METHOD_NOT_ALLOWED', [request.method, path, allow])
  }
  // Decided before the body is parsed: a QUERY or PROPFIND without a content type would otherwise
  // end as a 400 about the body of a route that does not exist.
  app.addHook('onRequest', async (request, reply) => { if (request.is404) await refuse(request, reply) })
  app.setNotFoundHandler(refuse)
}
