// Redis outages and AUTH (issue 6): down at start, dying under load and returning, a password in
// REDIS_URL that works and never shows in logs, readiness or errors. Real redis-server children.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import app from '../src/app.ts'
import { vectorToBuffer } from '../src/cache/vector-codec.ts'
import { loadConfig } from '../src/config.ts'
import type { PredictResult } from '../src/predict/predict-service.ts'
import { serverOptions } from '../src/server-options.ts'
import { build, waitFor } from '../support/app.ts'
import { BUNDLE_DIR } from '../support/bundle.ts'
import { freePort, startRedis } from '../support/redis.ts'

type Reply = { statusCode: number; json: PredictResult }

async function predict(server: FastifyInstance, titles: readonly string[], extra: object = {}): Promise<Reply> {
  const res = await server.inject({ method: 'POST', url: '/predict', payload: { items: titles.map((title, i) => ({ id: `t${i}`, title })), ...extra } })
  return { statusCode: res.statusCode, json: res.statusCode === 200 ? res.json<PredictResult>() : ({} as PredictResult) }
}

/** Writes a text vector for `title` straight into Redis, under the key the server will look up. */
async function seed(redis: Redis, server: FastifyInstance, title: string): Promise<void> {
  const dim = server.bundle.manifest.oov.text.dim
  await redis.set(server.keyOf('text', title), vectorToBuffer(new Float32Array(dim).fill(0.02)), 'EX', 600)
}

function admin(url: string): Redis {
  const r = new Redis(url, { retryStrategy: () => 100, maxRetriesPerRequest: 1 })
  r.on('error', () => undefined) // expected while a test kills the server
  return r
}

test('Redis down at start: the app starts, /readyz 503, /predict 200 with OOV; Redis started → ready and L2 hits within 5 s', async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  await redis.kill()
  const prefix = `hr-${randomBytes(3).toString('hex')}`
  const server = await build(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix })

  const ready = await server.inject({ url: '/readyz' })
  assert.equal(ready.statusCode, 503)
  assert.equal(ready.json<{ redis: string }>().redis, 'down')
  const down = await predict(server, ['a title while redis is down'])
  assert.equal(down.statusCode, 200)
  assert.deepEqual(down.json.predictions[0]?.sources, { image: 'absent', text: 'oov' })

  await redis.start()
  const startedAt = Date.now()
  const direct = admin(redis.url)
  t.after(() => direct.disconnect())
  await waitFor(async () => ((await direct.ping().catch(() => undefined)) === 'PONG' ? true : undefined), 15_000)
  await seed(direct, server, 'a title seeded in redis')
  const readyAfterMs = await waitFor(async () => ((await server.inject({ url: '/readyz' })).statusCode === 200 ? Date.now() - startedAt : undefined), 15_000)
  const l2AfterMs = await waitFor(async () => {
    const r = await predict(server, ['a title seeded in redis'])
    assert.equal(r.statusCode, 200)
    return r.json.predictions[0]?.sources.text === 'l2' ? Date.now() - startedAt : undefined
  }, 15_000)
  t.diagnostic(`ready ${readyAfterMs} ms and first L2 hit ${l2AfterMs} ms after redis-server accepted connections`)
  assert.ok(l2AfterMs <= 5_000, `L2 hits resumed only after ${l2AfterMs} ms`)
})

test('Redis killed under load and restarted: no 5xx, L2 hits before and after, lookups stay bounded', async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  const prefix = `hr-${randomBytes(3).toString('hex')}`
  const server = await build(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix })
  const direct = admin(redis.url)
  t.after(() => direct.disconnect())
  const titles = Array.from({ length: 20 }, (_, i) => `seeded title number ${i}`)
  for (const title of titles) await seed(direct, server, title)

  const statuses = new Map<number, number>()
  const tiers = { l1: 0, l2: 0, oov: 0 }
  let maxLookupMs = 0
  let stop = false
  let sent = 0
  const record = (r: Reply): void => {
    sent++
    statuses.set(r.statusCode, (statuses.get(r.statusCode) ?? 0) + 1)
    if (r.statusCode === 200) maxLookupMs = Math.max(maxLookupMs, r.json.timing_ms.lookup ?? 0)
  }
  // 4 closed-loop clients, bounded by the stop flag, a count and a time limit.
  const until = Date.now() + 90_000
  const client = async (c: number): Promise<void> => {
    for (let i = 0; !stop && i < 50_000 && Date.now() < until; i++) {
      // One new title per request, so L2 is consulted on every request.
      const r = await predict(server, [titles[(i + c) % titles.length] as string, `fresh ${c}-${i}`])
      record(r)
      const s = r.statusCode === 200 ? r.json.predictions[0]?.sources.text : undefined
      if (s === 'l1' || s === 'l2' || s === 'oov') tiers[s]++
    }
  }
  const load = Promise.all([0, 1, 2, 3].map(client))
  await sleep(500)
  await redis.kill()
  await sleep(1_500)
  const hitsBefore = tiers.l2
  await redis.start()
  // Titles written only now, requested once each: an `l2` answer is a real hit after the return.
  const probes = Array.from({ length: 300 }, (_, i) => `probe title after the restart ${i}`)
  await waitFor(async () => ((await direct.ping().catch(() => undefined)) === 'PONG' ? true : undefined), 20_000)
  for (const title of probes) await seed(direct, server, title)
  let k = 0
  const recovered = await waitFor(async () => {
    const r = await predict(server, [probes[k++ % probes.length] as string])
    record(r)
    return r.statusCode === 200 && r.json.predictions[0]?.sources.text === 'l2' ? true : undefined
  }, 20_000)
  stop = true
  await load
  t.diagnostic(`requests ${sent}, statuses ${JSON.stringify([...statuses])}, seeded-title tiers ${JSON.stringify(tiers)}, max lookup ${maxLookupMs} ms`)
  assert.ok(recovered)
  assert.deepEqual([...statuses.keys()], [200], 'every request answered 200')
  assert.ok(hitsBefore > 0, 'L2 served before the outage')
  // The default budget is 200 ms; an L2 call is bounded by it, so even a loaded machine stays far below this.
  assert.ok(maxLookupMs < 2_000, `a lookup took ${maxLookupMs} ms`)
})

/** A redis-server child of this test with `--requirepass`. */
async function startAuthRedis(password: string): Promise<{ port: number; stop: () => Promise<void> }> {
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--requirepass', password], { stdio: 'ignore' })
  const stop = (): Promise<void> => new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) { resolve(); return }
    child.once('exit', () => resolve())
    child.kill('SIGKILL')
  })
  await waitFor(async () => {
    const probe = new Redis({ port, host: '127.0.0.1', password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    probe.on('error', () => undefined)
    try {
      await probe.connect()
      return (await probe.ping()) === 'PONG' ? true : undefined
    } catch {
      return undefined
    } finally {
      probe.disconnect()
    }
  }, 10_000)
  return { port, stop }
}

/** The real app with its pino output captured line by line. */
async function buildWithLogs(t: { after(fn: () => Promise<unknown>): void }, overrides: Record<string, string | number>): Promise<{ server: FastifyInstance; logs: string[] }> {
  const logs: string[] = []
  const stream = new Writable({ write(chunk: Buffer, _enc, cb) { logs.push(chunk.toString()); cb() } })
  const config = loadConfig({ MODEL_DIR: BUNDLE_DIR, LOG_LEVEL: 'debug', ...overrides }, {})
  const opts = serverOptions(config)
  const server = Fastify({ ...opts, logger: { ...(typeof opts.logger === 'object' ? opts.logger : {}), level: 'debug', stream } })
  await server.register(app, { config })
  await server.ready()
  t.after(() => server.close())
  return { server, logs }
}

test('REDIS_URL with a password: AUTH works; the password never appears in logs, /readyz or error bodies', async (t) => {
  const password = `pw-${randomBytes(12).toString('hex')}`
  const wrong = `wrong-${randomBytes(12).toString('hex')}`
  const redis = await startAuthRedis(password)
  t.after(() => redis.stop())
  const prefix = `ha-${randomBytes(3).toString('hex')}`

  const good = await buildWithLogs(t, { REDIS_URL: `redis://:${password}@127.0.0.1:${redis.port}`, REDIS_PREFIX: prefix })
  await waitFor(async () => ((await good.server.inject({ url: '/readyz' })).statusCode === 200 ? true : undefined), 10_000)
  const title = 'a title embedded through an authenticated redis'
  const r = await predict(good.server, [title], { options: { miss_policy: 'budget', budget_ms: 10_000 } })
  assert.equal(r.statusCode, 200)
  assert.equal(r.json.predictions[0]?.sources.text, 'computed')
  const direct = admin(`redis://:${password}@127.0.0.1:${redis.port}`)
  t.after(() => direct.disconnect())
  await waitFor(async () => ((await direct.exists(good.server.keyOf('text', title))) === 1 ? true : undefined), 10_000)

  const bad = await buildWithLogs(t, { REDIS_URL: `redis://default:${wrong}@127.0.0.1:${redis.port}`, REDIS_PREFIX: prefix })
  const notReady = await bad.server.inject({ url: '/readyz' })
  assert.equal(notReady.statusCode, 503)
  const served = await predict(bad.server, [title, 'another title'])
  assert.equal(served.statusCode, 200, 'a refused AUTH reads as Redis down, not as a failed request')
  const badRequest = await bad.server.inject({ method: 'POST', url: '/predict', payload: { items: [{ id: 'x', numeric: { hour: 'x' } }] } })
  await sleep(1_500) // let reconnect attempts fail and be logged
  const everything = [...good.logs, ...bad.logs, notReady.body, badRequest.body, (await good.server.inject({ url: '/readyz' })).body,
    (await bad.server.inject({ url: '/metrics' })).body].join('\n')
  assert.ok(bad.logs.some((l) => /redis/i.test(l)), 'the refused connection is logged')
  assert.ok(!everything.includes(password), 'the password leaked')
  assert.ok(!everything.includes(wrong), 'the wrong password leaked')
})
