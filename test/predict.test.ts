import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { build, waitFor } from '../support/app.ts'
import { SAMPLE_DIR } from '../support/bundle.ts'
import { startImageOrigin } from '../support/image-origin.ts'
import { redisErrors } from '../support/queue-harness.ts'
import { startRedis } from '../support/redis.ts'
import { sampleContexts, sampleItems } from '../support/sample.ts'
import type { PredictBody } from '../src/predict/types.ts'
import type { PredictResult } from '../src/predict/predict-service.ts'

async function predict(app: FastifyInstance, body: PredictBody): Promise<PredictResult> {
  const res = await app.inject({ method: 'POST', url: '/predict', payload: body })
  assert.equal(res.statusCode, 200, res.body)
  return res.json<PredictResult>()
}

test('first request answers OOV and queues the job; after it, the same request is served from L1 with a different prediction', async (t) => {
  const origin = await startImageOrigin(SAMPLE_DIR)
  t.after(() => origin.close())
  const app = await build(t)
  const items = sampleItems(origin.baseUrl, 3)
  const body: PredictBody = { context: sampleContexts(1)[0] ?? {}, items }

  const first = await predict(app, body)
  assert.equal(first.predictions.length, 3)
  for (const p of first.predictions) {
    assert.equal(p.sources.image, 'oov')
    assert.equal(p.sources.text, 'oov')
    assert.ok(p.ctr.mean > 0 && p.ctr.mean < 1)
    assert.ok(p.ctr.quantiles.p05! < p.ctr.quantiles.p50! && p.ctr.quantiles.p50! < p.ctr.quantiles.p95!)
    const w = p.ctr.components.reduce((a, c) => a + c.weight, 0)
    assert.ok(Math.abs(w - 1) <= 1e-5, `component weights sum to ${w}`)
  }
  const second = await waitFor(async () => {
    const r = await predict(app, body)
    return r.predictions.every((p) => p.sources.image === 'l1' && p.sources.text === 'l1') ? r : undefined
  })
  for (let i = 0; i < 3; i++) {
    const a = first.predictions[i]!.ctr
    const b = second.predictions[i]!.ctr
    assert.ok(Math.abs(a.raw_mean - b.raw_mean) > 1e-6, `item ${i}: prediction did not change with the real embeddings`)
  }
  // Each image was fetched once: the job is not repeated for later requests.
  for (const it of items) assert.equal(origin.hits.get(new URL(it.image_url!).pathname), 1)
})

test('missing inputs are absent, unknown fields are warned about, and a repeated request is identical', async (t) => {
  const app = await build(t)
  const body: PredictBody = {
    context: { categorical: { device: 'mobile', planet: 'mars' }, numeric: { hour: 14 } },
    items: [{ id: 'x', categorical: { colour: 'red' } }, { id: 'y' }],
  }
  const a = await predict(app, body)
  assert.deepEqual(a.predictions.map((p) => p.sources), [{ image: 'absent', text: 'absent' }, { image: 'absent', text: 'absent' }])
  assert.ok(a.warnings.some((w) => w.includes('context/categorical/planet')), JSON.stringify(a.warnings))
  assert.ok(a.warnings.some((w) => w.includes('categorical/colour')), JSON.stringify(a.warnings))
  const b = await predict(app, body)
  assert.deepEqual(b.predictions, a.predictions)
})

test('bad bodies get a 400 that names the field and the reason', async (t) => {
  const app = await build(t, { MAX_ITEMS: 5 })
  const cases: Array<[unknown, string]> = [
    [{}, 'body: must have required property \'items\''],
    [{ items: [] }, 'body/items'],
    [{ items: [{ id: 'a' }, { id: 'b' }, { id: 'c' }, { id: 'd' }, { id: 'e' }, { id: 'f' }] }, 'body/items'],
    [{ items: [{ id: 5 }] }, 'body/items/0/id'],
    [{ items: [{ id: 'a', image_url: 'file:///etc/passwd' }] }, 'body/items/0/image_url'],
    [{ items: [{ id: 'a', title: 'x'.repeat(5000) }] }, 'body/items/0/title'],
    [{ items: [{ id: 'a', numeric: { age_hours: 'old' } }] }, 'body/items/0/numeric/age_hours'],
    [{ items: [{ id: 'a', categorical: { publisher: 42 } }] }, 'body/items/0/categorical/publisher'],
    [{ items: [{ id: 'a', categorical: { publisher: ['p1', 'p2'] } }] }, 'body/items/0/categorical/publisher'],
    [{ items: [{ id: 'a' }], options: { miss_policy: 'always' } }, 'body/options/miss_policy'],
    [{ items: [{ id: 'a' }], options: { budget_ms: -5 } }, 'body/options/budget_ms'],
    [{ items: [{ id: 'a' }], extra: 1 }, 'unknown property "extra"'],
  ]
  for (const [payload, field] of cases) {
    const res = await app.inject({ method: 'POST', url: '/predict', payload: payload as object })
    assert.equal(res.statusCode, 400, `${JSON.stringify(payload).slice(0, 80)} → ${res.body}`)
    const err = res.json<{ code: string; message: string }>()
    assert.match(err.code, /^CTR_ERR_/)
    assert.ok(err.message.includes(field), `${err.message} should name ${field}`)
  }
  const inf = await app.inject({ method: 'POST', url: '/predict', headers: { 'content-type': 'application/json' },
    payload: '{"items":[{"id":"a","numeric":{"age_hours":1e999}}]}' })
  assert.equal(inf.statusCode, 400, inf.body)
  assert.ok(inf.json<{ message: string }>().message.includes('body/items/0/numeric/age_hours'))
  const notJson = await app.inject({ method: 'POST', url: '/predict', headers: { 'content-type': 'application/json' }, payload: '{"items": [' })
  assert.equal(notJson.statusCode, 400)
})

test('a second instance on the same Redis reads L2; with Redis killed it still answers 200 within budget', async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  const origin = await startImageOrigin(SAMPLE_DIR)
  t.after(() => origin.close())
  const prefix = `t${Date.now()}`
  const a = await build(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix })
  const body: PredictBody = { context: sampleContexts(2)[1] ?? {}, items: sampleItems(origin.baseUrl, 4) }
  await predict(a, body)
  const fromA = await waitFor(async () => {
    const r = await predict(a, body)
    return r.predictions.every((p) => p.sources.image === 'l1' && p.sources.text === 'l1') ? r : undefined
  })

  const b = await build(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix })
  await waitFor(async () => ((await b.inject({ url: '/readyz' })).statusCode === 200 ? true : undefined))
  const fromB = await predict(b, body)
  for (const p of fromB.predictions) assert.deepEqual(p.sources, { image: 'l2', text: 'l2' })
  fromB.predictions.forEach((p, i) => assert.ok(Math.abs(p.ctr.mean - fromA.predictions[i]!.ctr.mean) <= 1e-9))
  const again = await predict(b, body)
  for (const p of again.predictions) assert.deepEqual(p.sources, { image: 'l1', text: 'l1' })

  await redis.kill()
  const c = await build(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix })
  const res = await c.inject({ method: 'POST', url: '/predict', payload: { ...body, options: { budget_ms: 200 } } })
  assert.equal(res.statusCode, 200)
  for (const p of res.json<PredictResult>().predictions) assert.equal(p.sources.image, 'oov')
  // The L2 read was refused at once (client not ready: no command sent, so nothing waits on Redis's
  // 2 s command timeout) and counted as a Redis error, not as an empty cache.
  assert.ok(await redisErrors(c.metrics, 'get') >= 1)
  assert.equal((await c.inject({ url: '/readyz' })).statusCode, 503)
})

test('with Redis, two instances missing the same items embed each image once (durable shared queue)', async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  const origin = await startImageOrigin(SAMPLE_DIR)
  t.after(() => origin.close())
  const prefix = `d${Date.now()}`
  const a = await build(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix })
  const b = await build(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix })
  for (const app of [a, b]) await waitFor(async () => ((await app.inject({ url: '/readyz' })).statusCode === 200 ? true : undefined))
  const items = sampleItems(origin.baseUrl, 14).slice(8)
  const body: PredictBody = { items }
  await Promise.all([predict(a, body), predict(b, body), predict(a, body), predict(b, body)])
  for (const app of [a, b]) {
    await waitFor(async () => {
      const r = await predict(app, body)
      return r.predictions.every((p) => p.sources.image !== 'oov' && p.sources.text !== 'oov') ? true : undefined
    })
  }
  for (const it of items) assert.equal(origin.hits.get(new URL(it.image_url!).pathname), 1, `${it.image_url} fetched more than once`)
})
