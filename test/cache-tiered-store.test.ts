import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'
import type { Counter } from 'prom-client'
import { embeddingKey } from '../src/cache/keys.ts'
import { L1Cache } from '../src/cache/l1.ts'
import { L2Cache } from '../src/cache/l2.ts'
import { MAX_RECONNECT_DELAY_MS, createRedisClient, reconnectDelay } from '../src/cache/redis-client.ts'
import { TieredStore } from '../src/cache/tiered-store.ts'
import { createMetrics, type Metrics } from '../src/metrics.ts'
import { freePort, startRedis, type RedisServer, waitReady } from '../support/redis.ts'
import { bytesOf, randomVector } from '../support/vectors.ts'

const DIMS = { image: 1280, text: 128 }
const TTL = 3600

let server: RedisServer
let admin: Redis

before(async () => {
  server = await startRedis()
  admin = createRedisClient(server.url)
  admin.on('error', () => undefined) // the outage test kills the server under this client too
  await waitReady(admin)
})
after(async () => {
  admin.disconnect()
  await server.stop()
})



async function counterValue(counter: Counter<string>, labels: Record<string, string>): Promise<number> {
  const { values } = await counter.get()
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
    .reduce((sum, v) => sum + v.value, 0)
}

interface Fixture {
  readonly client: Redis
  readonly l2: L2Cache
  readonly metrics: Metrics
  readonly logs: Array<{ level: 'warn' | 'info'; msg: string }>
  store(l1Bytes?: number): TieredStore
  key(modality: 'image' | 'text', input: string): string
}

async function fixture(t: { after(fn: () => Promise<void>): void }, url = server.url): Promise<Fixture> {
  const prefix = `test:${randomUUID()}`
  const client = createRedisClient(url)
  const metrics = createMetrics({ defaultMetrics: false })
  const logs: Fixture['logs'] = []
  const logger = {
    warn: (_obj: object, msg: string) => { logs.push({ level: 'warn', msg }) },
    info: (_obj: object, msg: string) => { logs.push({ level: 'info', msg }) },
  }
  const l2 = new L2Cache({ redis: client, dims: DIMS, metrics, logger })
  t.after(async () => {
    client.disconnect()
    if (admin.status !== 'ready') return
    const keys = await admin.keys(`${prefix}:*`)
    if (keys.length > 0) await admin.del(...keys)
  })
  return {
    client, l2, metrics, logs,
    store: (l1Bytes = 50_000_000) => new TieredStore({ l1: new L1Cache({ maxBytes: l1Bytes }), l2, ttlSeconds: TTL, metrics }),
    key: (m, input) => embeddingKey(prefix, m, 'v1', input),
  }
}

test('lookup: L1 hits, L2 hits promoted to L1, misses; counted by tier, modality and result', async (t) => {
  const f = await fixture(t)
  await waitReady(f.client)
  const writer = f.store()
  const image = { key: f.key('image', 'a.jpg'), vector: randomVector(1280) }
  const text = { key: f.key('text', 'red suv'), vector: randomVector(128) }
  assert.equal(await writer.store([image, text]), 2)
  const pttl = await admin.pttl(image.key)
  assert.ok(pttl > 0 && pttl <= TTL * 1000, `PTTL ${pttl}`)

  const reader = f.store() // another instance: empty L1, same Redis
  reader.l1.set(text.key, text.vector)
  const missing = f.key('image', 'never-seen.jpg')
  const mget = await commandCalls('mget')
  const first = await reader.lookup([image.key, text.key, missing], Date.now() + 500)
  assert.equal(await commandCalls('mget') - mget, 1, 'one round trip for the L1 misses')
  assert.equal(first[0]?.tier, 'l2')
  assert.ok(first[0] && bytesOf(first[0].vector).equals(bytesOf(image.vector)))
  assert.equal(first[1]?.tier, 'l1')
  assert.equal(first[2], undefined)
  assert.ok(reader.l1.has(image.key), 'L2 hit promoted')
  assert.ok(!reader.l1.has(missing))

  const second = await reader.lookup([image.key, text.key], Date.now() + 500)
  assert.deepEqual(second.map((r) => r?.tier), ['l1', 'l1'])
  assert.equal(await commandCalls('mget') - mget, 1, 'all-L1 lookups do not touch Redis')

  const c = f.metrics.cacheLookups
  assert.equal(await counterValue(c, { tier: 'l1', modality: 'image', result: 'hit' }), 1)
  assert.equal(await counterValue(c, { tier: 'l1', modality: 'image', result: 'miss' }), 2)
  assert.equal(await counterValue(c, { tier: 'l2', modality: 'image', result: 'hit' }), 1)
  assert.equal(await counterValue(c, { tier: 'l2', modality: 'image', result: 'miss' }), 1)
  assert.equal(await counterValue(c, { tier: 'l1', modality: 'text', result: 'hit' }), 2)
  assert.equal(await counterValue(c, { tier: 'l1', modality: 'text', result: 'miss' }), 0)
})

test('without Redis the store is L1 only', async () => {
  const metrics = createMetrics({ defaultMetrics: false })
  const store = new TieredStore({ l1: new L1Cache({ maxBytes: 1_000_000 }), ttlSeconds: TTL, metrics })
  const e = { key: embeddingKey('p', 'text', 'v1', 'x'), vector: randomVector(128) }
  assert.equal(await store.store([e]), 0)
  const [hit, miss] = await store.lookup([e.key, embeddingKey('p', 'text', 'v1', 'y')], Date.now() + 100)
  assert.equal(hit?.tier, 'l1')
  assert.equal(miss, undefined)
  assert.equal(store.l2, undefined)
  assert.equal(await counterValue(metrics.cacheLookups, { tier: 'l2' }), 0)
})

test('Redis down at start: misses at once, no throw, one warning', async (t) => {
  const f = await fixture(t, `redis://127.0.0.1:${await freePort()}`)
  const store = f.store()
  const started = Date.now()
  const [r] = await store.lookup([f.key('text', 'x')], started + 200)
  assert.equal(r, undefined)
  assert.ok(Date.now() - started < 50, 'not connected: no wait at all')
  assert.equal(await store.store([{ key: f.key('text', 'y'), vector: randomVector(128) }]), 0)
  assert.equal(f.l2.isReady(), false)
  assert.ok(await counterValue(f.metrics.redisErrors, { op: 'get' }) >= 1)
  assert.ok(await counterValue(f.metrics.redisErrors, { op: 'set' }) >= 1)
  await sleep(300) // a few reconnect attempts
  assert.equal(f.logs.filter((l) => l.level === 'warn').length, 1)
})

test('reconnect backoff grows but never waits more than 1 s', () => {
  const delays = Array.from({ length: 50 }, (_, i) => reconnectDelay(i + 1))
  assert.equal(MAX_RECONNECT_DELAY_MS, 1000)
  assert.ok(delays.every((d, i) => d > 0 && d <= 1000 && d >= (delays[i - 1] ?? 0)))
  assert.equal(delays.at(-1), 1000)
})

test('Redis killed: misses within the deadline; restarted: L2 hits again within 5 s', async (t) => {
  const f = await fixture(t)
  await waitReady(f.client)
  const entries = Array.from({ length: 100 }, (_, i) => ({ key: f.key('text', `t${i}`), vector: randomVector(128) }))
  assert.equal(await f.store().store(entries), 100)
  const keys = entries.map((e) => e.key)

  await server.kill()
  const timings: string[] = []
  for (const budget of [200, 50, 200]) {
    const store = f.store() // empty L1: everything has to come from L2
    const started = Date.now()
    const got = await store.lookup(keys, started + budget)
    const elapsed = Date.now() - started
    assert.ok(got.every((r) => r === undefined), 'all misses while Redis is down')
    assert.ok(elapsed <= budget + 50, `lookup took ${elapsed} ms for a ${budget} ms budget`)
    timings.push(`${elapsed}/${budget} ms`)
  }
  t.diagnostic(`lookups while down: ${timings.join(', ')}`)
  assert.ok(await counterValue(f.metrics.redisErrors, { op: 'get' }) >= 1)
  assert.equal(await counterValue(f.metrics.cacheLookups, { tier: 'l2', result: 'miss' }), 300)
  await sleep(2500) // long enough for the reconnect backoff to reach its 1 s cap

  await server.start()
  const restarted = Date.now()
  // SIGKILL can lose the last writes (appendfsync everysec postpones writes while an fsync runs),
  // and this test is about reconnecting, not persistence: rewrite them through a fresh client.
  const writer = createRedisClient(server.url)
  await waitReady(writer)
  const survived = await writer.exists(...keys)
  const pipeline = writer.pipeline()
  for (const e of entries) pipeline.set(e.key, Buffer.from(e.vector.buffer), 'EX', TTL)
  await pipeline.exec()
  writer.disconnect()
  let recoveredAfter = -1
  while (Date.now() - restarted < 5000) {
    const got = await f.store().lookup(keys, Date.now() + 500)
    if (got.every((r) => r?.tier === 'l2')) {
      recoveredAfter = Date.now() - restarted
      break
    }
    await sleep(50)
  }
  assert.ok(recoveredAfter >= 0, 'no L2 hits within 5 s of the restart')
  const warns = f.logs.filter((l) => l.level === 'warn').length
  const infos = f.logs.filter((l) => l.level === 'info').length
  assert.deepEqual([warns, infos], [1, 1], 'one warning per outage and one line on recovery')
  await waitReady(admin)
  t.diagnostic(`L2 hits back ${recoveredAfter} ms after redis-server accepted connections (${survived}/100 keys survived the kill)`)
})

async function commandCalls(name: string): Promise<number> {
  const info = await admin.info('commandstats')
  const m = new RegExp(`^cmdstat_${name}:calls=(\\d+)`, 'm').exec(info)
  return m ? Number(m[1]) : 0
}
