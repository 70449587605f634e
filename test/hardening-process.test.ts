// Restarts of a real server process (issue 6): SIGTERM drains the requests in flight and then
// refuses connections; with Redis, jobs accepted before a `kill -9` are completed after a restart.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { embeddingKey } from '../src/cache/keys.ts'
import { loadBundle } from '../src/bundle/load-bundle.ts'
import { waitFor } from '../support/app.ts'
import { BUNDLE_DIR, SAMPLE_DIR } from '../support/bundle.ts'
import { startRedis } from '../support/redis.ts'
import { startServerProcess, startSlowOrigin } from '../support/server-process.ts'

const IMAGES = join(SAMPLE_DIR, 'images')
const FILES = readdirSync(IMAGES).filter((f) => f.endsWith('.jpg')).sort()

test('SIGTERM: every request in flight is answered 200, then connections are refused', async (t) => {
  const origin = await startSlowOrigin(IMAGES, 1_500)
  t.after(() => origin.close())
  const t0 = Date.now()
  const server = await startServerProcess({ IMAGE_ALLOWED_HOSTS: '127.0.0.1' })
  t.after(() => server.kill('SIGKILL'))
  const startedMs = Date.now() - t0

  // budget policy + a slow origin: each request waits ~1.5 s for its image on the request path.
  const n = 8
  const inFlight = Array.from({ length: n }, (_, i) => fetch(`${server.url}/predict`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ items: [{ id: `g${i}`, image_url: `${origin.baseUrl}/${FILES[100 + i] ?? ''}`, title: `graceful ${i}` }], options: { miss_policy: 'budget', budget_ms: 10_000 } }),
  }).then(async (r) => ({ status: r.status, body: await r.text() }), (err: unknown) => ({ status: 0, body: String(err) })))
  await waitFor(async () => (origin.hits.size >= n ? true : undefined), 20_000, 20)
  const termAt = Date.now()
  server.kill('SIGTERM')
  const replies = await Promise.all(inFlight)
  const answeredMs = Date.now() - termAt
  for (const r of replies) assert.equal(r.status, 200, r.body.slice(0, 300))
  const exit = await server.exited()
  const exitMs = Date.now() - termAt
  t.diagnostic(`server ready after ${startedMs} ms; in-flight answered ${answeredMs} ms and exit ${exitMs} ms after SIGTERM`)
  // Generous (an orchestrator's default grace is 30 s); before the fix it was fastify's 72 s keep-alive timeout.
  assert.ok(exitMs < 30_000, `exit took ${exitMs} ms after SIGTERM`)
  assert.deepEqual(exit, { code: 0, signal: null }, server.output.join('').slice(-2000))
  await assert.rejects(fetch(`${server.url}/healthz`), /fetch failed/)
  const refused = await fetch(`${server.url}/healthz`).catch((err: unknown) => (err as { cause?: { code?: string } }).cause?.code)
  assert.equal(refused, 'ECONNREFUSED')
  assert.ok(server.output.join('').includes('finishing in-flight requests'))
})

// About 90 s (the dead consumer's entries are reclaimed after the queue's 60 s claim idle time), so
// it runs on request: HARDENING_SLOW=1. bench/chaos/run.ts measures the same case on every run.
const slow = process.env.HARDENING_SLOW === '1' ? false : 'set HARDENING_SLOW=1 (about 90 s)'

test('durable queue: jobs accepted before kill -9 are completed after a restart', { timeout: 180_000, skip: slow }, async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  const origin = await startSlowOrigin(IMAGES, 30_000) // the first instance never finishes a fetch
  t.after(() => origin.close())
  const prefix = `hk-${randomBytes(3).toString('hex')}`
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: prefix, IMAGE_ALLOWED_HOSTS: '127.0.0.1', IMAGE_FETCH_TIMEOUT_MS: '60000' }
  const first = await startServerProcess(env)
  t.after(() => first.kill('SIGKILL'))

  const urls = FILES.slice(200, 240).map((f) => `${origin.baseUrl}/${f}`)
  const res = await fetch(`${first.url}/predict`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ items: urls.map((image_url, i) => ({ id: `k${i}`, image_url })) }),
  })
  assert.equal(res.status, 200)
  // Some jobs are being fetched (pending in the first instance's consumer), the rest wait in the stream.
  await waitFor(async () => (origin.hits.size > 0 ? true : undefined), 20_000, 20)
  first.kill('SIGKILL')
  assert.equal((await first.exited()).signal, 'SIGKILL')

  origin.delayMs = 0
  const second = await startServerProcess(env)
  t.after(() => second.kill('SIGKILL'))
  const bundle = await loadBundle(BUNDLE_DIR)
  const keys = urls.map((u) => embeddingKey(prefix, 'image', bundle.manifest.encoders.image.version, u))
  const direct = new Redis(redis.url)
  t.after(() => direct.disconnect())
  // Entries held by the dead consumer are reclaimed after the queue's claim idle time (60 s).
  const started = Date.now()
  const done = await waitFor(async () => {
    const present = (await Promise.all(keys.map((k) => direct.exists(k)))).filter((e) => e === 1).length
    return present === keys.length ? present : undefined
  }, 150_000, 1_000)
  t.diagnostic(`all ${done} jobs embedded ${Date.now() - started} ms after the restart`)
  assert.equal(done, urls.length)
  second.kill('SIGTERM')
  assert.equal((await second.exited()).code, 0)
})
