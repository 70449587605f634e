import type { FastifyInstance } from 'fastify'
import type { Manifest } from '../bundle/manifest.ts'

// A fresh instance's first second of traffic runs cold code: the request path, the scorer threads'
// head and statistics. In bench scenario 4 (200 req/s of 100 new items, a settled load driver)
// 1.1–1.2 % of the requests came back late or shed in that second without a warm-up and 0.00–0.20 %
// with 200 of these synthetic requests (three interleaved pairs; README, "The budget is a
// guarantee"). They are sent before the server listens (WARM_UP_REQUESTS, default 200, ~0.5 s at
// start-up) and, being quiet, queue no jobs and count in no metric.

/** Synthetic /predict bodies for the bundle's fields: every field set, every item with an image URL and a title. */
export function warmUpBodies(manifest: Pick<Manifest, 'fields'>, requests: number, itemsPerRequest: number): object[] {
  const valuesOf = (scope: 'item' | 'context', i: number) => {
    const categorical: Record<string, string | string[]> = {}
    const numeric: Record<string, number> = {}
    for (const f of manifest.fields) {
      if (f.scope !== scope) continue
      if (f.type === 'numeric') numeric[f.name] = (i * 0.37) % 50
      else categorical[f.name] = f.multi ? [`w${i % 13}`, `w${(i + 5) % 17}`] : `w${i % 29}`
    }
    return { categorical, numeric }
  }
  return Array.from({ length: requests }, (_, r) => ({
    context: valuesOf('context', r),
    // Items repeat across requests (every input's key is built, then memoised) and none is fetched:
    // the warm-up queues no jobs.
    items: Array.from({ length: itemsPerRequest }, (_, j) => {
      const i = (r * 7 + j) % (4 * itemsPerRequest)
      return { id: `warm-up-${i}`, image_url: `http://warm-up.invalid/${i}.jpg`, title: `warm up title ${i}`, ...valuesOf('item', i) }
    }),
    options: { miss_policy: 'oov' },
  }))
}

export interface WarmUpResult { readonly requests: number; readonly answered: number; readonly ms: number }

/**
 * Sends `requests` synthetic requests through the whole /predict route (app.inject: no socket),
 * `concurrency` at a time so that every scorer thread gets some, with the predict service quiet:
 * no jobs queued, no request metrics. Call it after `ready()` and before `listen()`.
 */
export async function warmUpRequestPath(app: FastifyInstance, requests: number, concurrency: number): Promise<WarmUpResult> {
  const t0 = performance.now()
  if (requests <= 0) return { requests: 0, answered: 0, ms: 0 }
  const bodies = warmUpBodies(app.bundle.manifest, requests, Math.min(100, app.config.MAX_ITEMS))
  let answered = 0
  await app.predict.quietly(async () => {
    let next = 0
    const lane = async (): Promise<void> => {
      while (next < bodies.length) {
        const res = await app.inject({ method: 'POST', url: '/predict', payload: bodies[next++] as object })
        if (res.statusCode === 200) answered++
      }
    }
    await Promise.all(Array.from({ length: Math.max(1, concurrency) }, lane))
  })
  return { requests, answered, ms: Math.round(performance.now() - t0) }
}
