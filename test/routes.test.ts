import { test } from 'node:test'
import assert from 'node:assert/strict'
import { build } from '../support/app.ts'
import { SAMPLE_DIR } from '../support/bundle.ts'
import { startImageOrigin } from '../support/image-origin.ts'
import { sampleItems } from '../support/sample.ts'
import type { PredictResult } from '../src/predict/predict-service.ts'

test('budget policy computes misses on the request path when the budget allows, and they are cached', async (t) => {
  const origin = await startImageOrigin(SAMPLE_DIR)
  t.after(() => origin.close())
  const app = await build(t)
  const items = sampleItems(origin.baseUrl, 5).slice(2)
  const res = await app.inject({ method: 'POST', url: '/predict', payload: { items, options: { miss_policy: 'budget', budget_ms: 5000 } } })
  assert.equal(res.statusCode, 200)
  const r = res.json<PredictResult>()
  for (const p of r.predictions) assert.deepEqual(p.sources, { image: 'computed', text: 'computed' })
  assert.ok(r.timing_ms.compute! > 0)
  const again = (await app.inject({ method: 'POST', url: '/predict', payload: { items } })).json<PredictResult>()
  for (const [i, p] of again.predictions.entries()) {
    assert.deepEqual(p.sources, { image: 'l1', text: 'l1' })
    assert.ok(Math.abs(p.ctr.mean - r.predictions[i]!.ctr.mean) <= 1e-12, 'computed and cached embeddings give one answer')
  }
  // A budget too small for an image fetch + encode (fewer than 8 seen: the initial 250 ms estimate)
  // falls back to OOV at once. 150 ms, not less: a busy machine can spend 50 ms before the check.
  const fresh = sampleItems(origin.baseUrl, 8).slice(6)
  const tightRes = await app.inject({ method: 'POST', url: '/predict', payload: { items: fresh, options: { miss_policy: 'budget', budget_ms: 150 } } })
  assert.equal(tightRes.statusCode, 200, tightRes.body)
  const tight = tightRes.json<PredictResult>()
  for (const p of tight.predictions) assert.equal(p.sources.image, 'oov')
})

test('health, readiness, model description, metrics and OpenAPI', async (t) => {
  const app = await build(t)
  assert.equal((await app.inject({ url: '/healthz' })).statusCode, 200)
  const ready = await app.inject({ url: '/readyz' })
  assert.equal(ready.statusCode, 200)
  assert.deepEqual(ready.json(), { ready: true, bundle: 'ctr-synth@1.4.1', redis: 'absent' })
  const model = (await app.inject({ url: '/model' })).json<{ name: string; fields: Array<{ name: string; scope: string }> }>()
  assert.equal(model.name, 'ctr-synth')
  assert.ok(model.fields.some((f) => f.name === 'publisher' && f.scope === 'item'))
  assert.ok(model.fields.some((f) => f.name === 'device' && f.scope === 'context'))

  await app.inject({ method: 'POST', url: '/predict', payload: { items: [{ id: 'a', title: 'a fresh title for metrics' }, { id: 'b' }] } })
  const metrics = (await app.inject({ url: '/metrics' })).body
  assert.match(metrics, /ctrserve_embedding_sources_total\{modality="text",source="oov"\} 1/)
  assert.match(metrics, /ctrserve_embedding_sources_total\{modality="image",source="absent"\} 2/)
  assert.match(metrics, /ctrserve_cache_lookups_total\{tier="l1",modality="text",result="miss"\} 1/)
  assert.match(metrics, /ctrserve_request_stage_seconds_count\{stage="head"\} 1/)
  const doc = (await app.inject({ url: '/docs/json' })).json<{ paths: Record<string, unknown> }>()
  assert.ok(doc.paths['/predict'] && doc.paths['/readyz'])
})

test('concurrent requests of different sizes get the answers they get alone (shared head buffers)', async (t) => {
  const app = await build(t)
  // A budget no queue on a slow machine reaches: this test is about the answers, not load shedding.
  const options = { budget_ms: 10_000 }
  const bodies = [1, 7, 3, 12, 2].map((n, j) => ({
    options,
    context: { categorical: { device: j % 2 ? 'mobile' : 'desktop' }, numeric: { hour: j * 3 } },
    items: Array.from({ length: n }, (_, i) => ({ id: `r${j}-${i}`, categorical: { publisher: `p${i + j}` }, numeric: { age_hours: i + 0.5 } })),
  }))
  const alone: PredictResult[] = []
  for (const b of bodies) {
    const res = await app.inject({ method: 'POST', url: '/predict', payload: b })
    assert.equal(res.statusCode, 200, res.body)
    alone.push(res.json<PredictResult>())
  }
  // Passes the schema, fails in the head's fill (publisher is single-valued): must not disturb the others.
  const bad = { options, items: [{ id: 'bad', categorical: { publisher: ['a', 'b'] } }] }
  const together = await Promise.all([...bodies, bad, ...bodies].map((b) => app.inject({ method: 'POST', url: '/predict', payload: b })))
  assert.equal(together[bodies.length]!.statusCode, 400)
  together.filter((_, i) => i !== bodies.length).forEach((res, i) => {
    const want = alone[i % bodies.length]!
    assert.equal(res.statusCode, 200, res.body)
    const got = res.json<PredictResult>()
    assert.deepEqual(got.predictions.map((p) => p.ctr), want.predictions.map((p) => p.ctr))
  })
})

test('a whitespace-only title is absent; a title with no tokens ends as the OOV vector', async (t) => {
  const app = await build(t)
  const r = (await app.inject({ method: 'POST', url: '/predict', payload: { items: [{ id: 'a', title: ' \t\n ' }, { id: 'b' }] } })).json<PredictResult>()
  assert.equal(r.predictions[0]!.sources.text, 'absent')
  assert.deepEqual(r.predictions[0]!.ctr, r.predictions[1]!.ctr)
  const res = await app.embedder.compute('text', [{ key: 'k-empty', input: '\u200b' }, { key: 'k-word', input: 'cars' }], Date.now() + 5000)
  assert.equal(res[1]!.ok, true)
  if (!res[0]!.ok) assert.equal(res[0]!.permanent, true)
})

test('a method a route does not have is 405 with Allow; an unknown path 404; both in the catalog body', async (t) => {
  const app = await build(t)
  const cases = [
    ['GET', '/predict', 'POST'], ['PUT', '/predict', 'POST'], ['DELETE', '/healthz', 'GET, HEAD'],
    ['POST', '/readyz', 'GET, HEAD'], ['PATCH', '/metrics', 'GET, HEAD'], ['POST', '/model', 'GET, HEAD'],
  ] as const
  for (const [method, url, allow] of cases) {
    const res = await app.inject({ method, url })
    assert.equal(res.statusCode, 405, `${method} ${url}`)
    assert.equal(res.headers.allow, allow)
    assert.deepEqual(res.json(), {
      statusCode: 405, code: 'CTR_ERR_METHOD_NOT_ALLOWED', error: 'Method Not Allowed', field: 'method',
      message: `method: ${method} is not allowed on ${url} (allowed: ${allow})`,
    })
  }
  // Decided before the body is parsed: a body-carrying method without a content type is still a 405.
  const query = await app.inject({ method: 'QUERY' as 'GET', url: '/healthz' })
  assert.equal(query.statusCode, 405)
  const missing = await app.inject({ method: 'GET', url: '/nope?x=1' })
  assert.equal(missing.statusCode, 404)
  assert.equal(missing.json<{ code: string }>().code, 'CTR_ERR_NOT_FOUND')
})

test('the OpenAPI document lists every status each route answers, with the error body schema', async (t) => {
  const app = await build(t)
  type Op = { responses: Record<string, { content?: Record<string, { schema: { required?: string[] } }> }> }
  const doc = (await app.inject({ url: '/docs/json' })).json<{ paths: Record<string, Record<string, Op>> }>()
  const statuses = (path: string, method: string) => Object.keys(doc.paths[path]?.[method]?.responses ?? {}).sort()
  assert.deepEqual(statuses('/predict', 'post'), ['200', '400', '413', '415', '500', '503'])
  assert.deepEqual(statuses('/readyz', 'get'), ['200', '500', '503'])
  assert.deepEqual(statuses('/model', 'get'), ['200', '500', '503'])
  assert.deepEqual(statuses('/healthz', 'get'), ['200', '500'])
  assert.deepEqual(statuses('/metrics', 'get'), ['200', '500'])
  const bad = doc.paths['/predict']?.post?.responses['400']?.content?.['application/json']?.schema
  assert.deepEqual(bad?.required, ['statusCode', 'code', 'error', 'message'])
  assert.ok(doc.paths['/metrics']?.get?.responses['200']?.content?.['text/plain'])
})
