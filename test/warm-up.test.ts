import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { build } from '../support/app.ts'
import { warmUpBodies, warmUpRequestPath } from '../src/predict/warm-up.ts'

/** Sum of a metric's samples (histograms: their _count samples). */
async function total(app: FastifyInstance, name: string): Promise<number> {
  const m = (await app.metrics.registry.getMetricsAsJSON()).find((x) => x.name === name)
  if (!m) throw new Error(`no metric ${name}`)
  const values = (m.values as Array<{ value: number; metricName?: string }>)
  return values.filter((v) => String(m.type) !== 'histogram' || v.metricName === `${name}_count`).reduce((s, v) => s + v.value, 0)
}

const QUIET = ['ctrserve_request_stage_seconds', 'ctrserve_cache_lookups_total', 'ctrserve_embedding_sources_total', 'ctrserve_embedding_jobs_total', 'ctrserve_queue_admission_total', 'ctrserve_late_responses_total', 'ctrserve_shed_requests_total']

test('the start-up warm-up answers every synthetic request and leaves no trace: no jobs, no request metrics', async (t) => {
  for (const concurrency of [1, 2]) {
    const app = await build(t, { WEB_CONCURRENCY: concurrency })
    const w = await warmUpRequestPath(app, 12, 2 * concurrency)
    assert.deepEqual({ requests: w.requests, answered: w.answered }, { requests: 12, answered: 12 })
    for (const name of QUIET) assert.equal(await total(app, name), 0, `${name} after the warm-up (WEB_CONCURRENCY=${concurrency})`)
    assert.equal(await app.queue.depth(), 0)
    assert.equal(app.predict.quiet, false)

    // The same body as a caller's request counts as one: 100 items, each with an image and a title, all OOV, all queued.
    const body = warmUpBodies(app.bundle.manifest, 1, 100)[0] as object
    const res = await app.inject({ method: 'POST', url: '/predict', payload: body })
    assert.equal(res.statusCode, 200)
    assert.equal(res.json<{ predictions: unknown[] }>().predictions.length, 100)
    assert.equal(await total(app, 'ctrserve_request_stage_seconds'), 6, 'six stages of one request')
    assert.equal(await total(app, 'ctrserve_embedding_sources_total'), 200)
    assert.ok(await app.queue.depth() > 0, 'its misses were queued')
  }
})

test('warm-up bodies set every field of the bundle, within MAX_ITEMS, and repeat items across requests', async (t) => {
  const app = await build(t)
  const bodies = warmUpBodies(app.bundle.manifest, 8, 100) as Array<{ context: { categorical: object; numeric: object }; items: Array<{ id: string; categorical: object; numeric: object }> }>
  const fields = app.bundle.manifest.fields
  const first = bodies[0]!
  for (const f of fields) {
    const group = f.scope === 'item' ? first.items[0]! : first.context
    assert.ok(f.name in (f.type === 'numeric' ? group.numeric : group.categorical), `${f.scope} field ${f.name}`)
  }
  const ids = bodies.flatMap((b) => b.items.map((it) => it.id))
  assert.equal(ids.length, 800)
  assert.ok(new Set(ids).size < ids.length, 'items repeat, so memoised keys and cached rows are exercised')
  assert.equal((await warmUpRequestPath(app, 0, 2)).requests, 0)
})
