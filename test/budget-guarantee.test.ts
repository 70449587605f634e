import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import { build, waitFor } from '../support/app.ts'
import { BUNDLE_DIR } from '../support/bundle.ts'
import app from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { serverOptions } from '../src/server-options.ts'
import { CostModel } from '../src/embedding/cost-model.ts'
import { CtrError } from '../src/errors.ts'
import type { Metrics } from '../src/metrics.ts'
import { HeadReserve } from '../src/predict/head-reserve.ts'
import { InlinePermits } from '../src/predict/inline-permits.ts'
import type { PredictResult } from '../src/predict/predict-service.ts'

/** An image origin that never answers: every fetch stays open until the fetcher gives it up. */
async function startHangingOrigin(): Promise<{ port: number; started: () => number; open: () => number; close: () => Promise<void> }> {
  let started = 0
  const open = new Set<ServerResponse>()
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    started++
    open.add(res)
    req.socket.once('close', () => open.delete(res))
  })
  await new Promise<void>((resolve) => server.listen(0, resolve)) // every address: 127.x.y.z are distinct hosts
  return {
    port: (server.address() as AddressInfo).port,
    started: () => started,
    open: () => open.size,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }),
  }
}

/** `n` image URLs on `n` distinct hosts (127.0.x.y, all on this machine). */
function distinctHostItems(port: number, n: number, tag: string): Array<{ id: string; image_url: string }> {
  return Array.from({ length: n }, (_, i) => ({ id: `${tag}${i}`, image_url: `http://127.0.${1 + (i >> 8)}.${i & 255}:${port}/${tag}${i}.jpg` }))
}

async function counter(metrics: Metrics, name: 'degraded', reason: string): Promise<number> {
  const { values } = await metrics[name].get()
  return values.filter((v) => v.labels.reason === reason).reduce((s, v) => s + v.value, 0)
}

// Background embedding takes one job at a time: fetches it starts are told apart by that bound.
const ONE_BACKGROUND_FETCH = { EMBED_CONCURRENCY: 1, EMBED_BATCH_SIZE: 1, IMAGE_ALLOWED_HOSTS: '127.0.0.0/8', MAX_ITEMS: 1000 }
// Documented in the README ("The budget is a guarantee"): one 1000-URL request costs < 64 MiB.
const RSS_BOUND_MIB = 64

test('budget policy: a 1000-URL request on 1000 hosts starts at most INLINE_MAX_ITEMS fetches, aborts them at the deadline and stays within the RSS bound', async (t) => {
  const origin = await startHangingOrigin()
  t.after(() => origin.close())
  const app = await build(t, { ...ONE_BACKGROUND_FETCH, INLINE_MAX_ITEMS: 4 })
  const items = distinctHostItems(origin.port, 1000, 'u')
  global.gc?.()
  const rss0 = process.memoryUsage().rss
  const res = await app.inject({ method: 'POST', url: '/predict', payload: { items, options: { miss_policy: 'budget', budget_ms: 1500 } } })
  const rss1 = process.memoryUsage().rss
  assert.equal(res.statusCode, 200, res.body)
  const r = res.json<PredictResult>()
  assert.equal(r.predictions.length, 1000)
  assert.ok(r.predictions.every((p) => p.sources.image === 'oov'))
  const started = origin.started()
  assert.ok(started >= 4, `the 4 inline fetches were started (${started})`)
  assert.ok(started <= 4 + 1, `at most 4 inline + 1 background fetch by the time of the answer, not ${started}`)
  assert.ok((rss1 - rss0) / 2 ** 20 < RSS_BOUND_MIB, `RSS grew by ${((rss1 - rss0) / 2 ** 20).toFixed(1)} MiB`)
  assert.equal(await counter(app.metrics, 'degraded', 'inline-item-cap'), 1)
  assert.equal(await counter(app.metrics, 'degraded', 'inline-abandoned'), 1)
  // The inline fetches were abandoned at the deadline: only background ones stay open.
  await waitFor(async () => (origin.open() <= 1 ? true : undefined), 10_000)
})

test('budget policy: INLINE_CONCURRENCY bounds inline work across concurrent requests; the rest is OOV and counted', async (t) => {
  const origin = await startHangingOrigin()
  t.after(() => origin.close())
  const app = await build(t, { ...ONE_BACKGROUND_FETCH, INLINE_MAX_ITEMS: 4, INLINE_CONCURRENCY: 6 })
  const replies = await Promise.all([0, 1, 2].map((k) => app.inject({
    method: 'POST', url: '/predict', payload: { items: distinctHostItems(origin.port, 4, `c${k}-`), options: { miss_policy: 'budget', budget_ms: 800 } },
  })))
  for (const res of replies) assert.equal(res.statusCode, 200, res.body)
  // Fetches never finish here, so none is started twice: 4 + 2 + 0 inline, and at most one background.
  const started = origin.started()
  assert.ok(started >= 6 && started <= 6 + 1, `${started} fetches started for 12 misses (limit 6 inline + 1 background)`)
  assert.ok(await counter(app.metrics, 'degraded', 'inline-busy') >= 1)
})

test('budget_ms above MAX_BUDGET_MS is a 400 naming the field and the maximum; below 10 ms too', async (t) => {
  const app = await build(t, { MAX_BUDGET_MS: 2000 })
  const big = await app.inject({ method: 'POST', url: '/predict', payload: { items: [{ id: 'a' }], options: { budget_ms: 2001 } } })
  assert.equal(big.statusCode, 400)
  const body = big.json<{ code: string; message: string; field: string }>()
  // The OpenAPI document states the maximum (predict-schema.ts), so the schema refuses it first.
  assert.equal(body.code, 'CTR_ERR_BAD_BODY')
  assert.equal(body.field, 'body/options/budget_ms')
  assert.match(body.message, /<= 2000/)
  assert.equal((await app.inject({ method: 'POST', url: '/predict', payload: { items: [{ id: 'a' }], options: { budget_ms: 2000 } } })).statusCode, 200)
  const small = await app.inject({ method: 'POST', url: '/predict', payload: { items: [{ id: 'a' }], options: { budget_ms: 5 } } })
  assert.equal(small.statusCode, 400)
  assert.match(small.json<{ message: string }>().message, /budget_ms/)
})

test('a request whose budget is spent before scoring is refused with 503 and no work; BUDGET_MS above MAX_BUDGET_MS stops start-up', async (t) => {
  const app = await build(t)
  const rt = app
  await assert.rejects(rt.predict.predict({ items: [{ id: 'a', title: 'never computed' }], options: { budget_ms: 200, miss_policy: 'budget' } }, Date.now() - 250),
    (err: unknown) => err instanceof CtrError && err.statusCode === 503 && err.code === 'CTR_ERR_BUDGET_SPENT')
  assert.equal(await rt.queue.depth(), 0, 'nothing queued for a refused request')
  const { loadConfig } = await import('../src/config.ts')
  assert.throws(() => loadConfig({ BUDGET_MS: 5000, MAX_BUDGET_MS: 1000 }, {}), /BUDGET_MS/)
})

test('late answers are counted when the response is written: a reply held past budget_ms by sending counts, one within it does not', async (t) => {
  const config = loadConfig({ MODEL_DIR: BUNDLE_DIR, LOG_LEVEL: 'silent', MAX_BUDGET_MS: 60_000 }, {})
  const server = Fastify(serverOptions(config))
  // Stands for a slow serialisation or write: every reply leaves 60 ms after it was ready.
  server.addHook('onSend', async () => { await new Promise((r) => setTimeout(r, 60)) })
  await server.register(app, { config })
  await server.ready()
  t.after(() => server.close())
  const late = async (): Promise<number> => (await server.metrics.lateResponses.get()).values.reduce((s, v) => s + v.value, 0)
  const ask = (budget: number) => server.inject({ method: 'POST', url: '/predict', payload: { items: [{ id: 'a', title: 'late or not' }], options: { budget_ms: budget } } })
  assert.equal((await ask(60_000)).statusCode, 200)
  assert.equal(await late(), 0, 'answered within 60 s')
  assert.equal((await ask(20)).statusCode, 200)
  assert.equal(await late(), 1, 'scored in time or not, the reply was written after 60 ms > 20 ms')
  assert.equal((await ask(0)).statusCode, 400)
  assert.equal(await late(), 1, 'errors are not late answers')
})

test('cost model: tail of the recent window per host, a margin, the overall tail for a host seen rarely, hosts bounded', () => {
  const m = new CostModel({ window: 64, minSamples: 8, quantile: 0.99, margin: 1.25, maxHosts: 3, initialMs: { image: 250, text: 40 } })
  assert.equal(m.estimateMs('image', 'a'), 250, 'nothing seen: the initial estimate')
  for (let i = 0; i < 63; i++) m.observe('image', 'fast', 10)
  m.observe('image', 'fast', 90) // one slow call in 64
  assert.equal(m.estimateMs('image', 'fast'), 90 * 1.25, 'p99 of 64 samples is the slowest: the tail, not the mean')
  for (let i = 0; i < 64; i++) m.observe('image', 'fast', 10)
  assert.equal(m.estimateMs('image', 'fast'), 10 * 1.25, 'the window forgets')
  for (let i = 0; i < 20; i++) m.observe('image', 'slow', 300)
  assert.equal(m.estimateMs('image', 'slow'), 375)
  m.observe('image', 'rare', 5)
  assert.equal(m.estimateMs('image', 'rare'), 375, 'a host with too few samples gets the overall tail')
  m.observe('image', 'd', 1) // a fourth host: the least recently used ('fast') is forgotten
  assert.equal(m.estimateMs('image', 'fast'), 375)
  for (let i = 0; i < 8; i++) m.observe('text', undefined, 4)
  assert.equal(m.estimateMs('text'), 5)
})

test('inline permits: never more than the limit, never negative', () => {
  const p = new InlinePermits(6)
  assert.equal(p.tryTake(4), 4)
  assert.equal(p.tryTake(4), 2)
  assert.equal(p.tryTake(1), 0)
  p.give(6)
  assert.equal(p.inUse, 0)
  p.give(3)
  assert.equal(p.tryTake(10), 6)
})

test('head reserve: a fixed part plus a per-item tail learnt from recent requests', () => {
  const r = new HeadReserve()
  assert.ok(Math.abs(r.reserveMs(100) - (3 + 100 * 0.15)) < 1e-9, 'initial: 3 ms + 0.15 ms per item')
  for (let i = 0; i < 98; i++) r.observe(100, 3 + 100 * 0.02) // 0.02 ms per item above the fixed part
  r.observe(100, 3 + 100 * 0.1) // two slow requests in 100: the nearest-rank p99
  r.observe(100, 3 + 100 * 0.1)
  assert.ok(Math.abs(r.reserveMs(200) - (3 + 200 * 0.1 * 1.5)) < 1e-9, 'p99 of the window × 1.5, scaled by the items')
  r.observe(1, 2) // below the fixed part: counts as 0 per item, not negative
  assert.ok(r.reserveMs(10) > 3)
})
