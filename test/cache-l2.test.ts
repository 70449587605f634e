import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'
import type { Counter } from 'prom-client'
import { embeddingKey } from '../src/cache/keys.ts'
import { L2Cache } from '../src/cache/l2.ts'
import { createRedisClient } from '../src/cache/redis-client.ts'
import { createMetrics, type Metrics } from '../src/metrics.ts'
import { startRedis, type RedisServer, waitReady } from '../support/redis.ts'
import { bytesOf, randomVector } from '../support/vectors.ts'

const randomVectorWide = (dim: number): Float32Array => randomVector(dim, { wideRange: true })

const DIMS = { image: 1280, text: 128 }

let server: RedisServer
let admin: Redis

before(async () => {
  server = await startRedis()
  admin = createRedisClient(server.url)
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

async function commandCalls(name: string): Promise<number> {
  const info = await admin.info('commandstats')
  const m = new RegExp(`^cmdstat_${name}:calls=(\\d+)`, 'm').exec(info)
  return m ? Number(m[1]) : 0
}

interface Fixture {
  readonly l2: L2Cache
  readonly client: Redis
  readonly metrics: Metrics
  readonly logs: Array<{ level: 'warn' | 'info'; msg: string }>
  key(modality: 'image' | 'text', input: string): string
}

/** An L2 on its own client with a unique key prefix; keys and client are cleaned up after the test. */
async function fixture(t: { after(fn: () => Promise<void>): void }): Promise<Fixture> {
  const prefix = `test:${randomUUID()}`
  const client = createRedisClient(server.url)
  const metrics = createMetrics({ defaultMetrics: false })
  const logs: Fixture['logs'] = []
  const logger = {
    warn: (_obj: object, msg: string) => { logs.push({ level: 'warn', msg }) },
    info: (_obj: object, msg: string) => { logs.push({ level: 'info', msg }) },
  }
  const l2 = new L2Cache({ redis: client, dims: DIMS, metrics, logger })
  t.after(async () => {
    const keys = await admin.keys(`${prefix}:*`)
    if (keys.length > 0) await admin.del(...keys)
    client.disconnect()
  })
  await waitReady(client)
  return { l2, client, metrics, logs, key: (m, input) => embeddingKey(prefix, m, 'v1', input) }
}

test('round trip of image and text vectors is bit-exact', async (t) => {
  const f = await fixture(t)
  const entries = [
    ...Array.from({ length: 10 }, (_, i) => ({ key: f.key('image', `img${i}`), vector: randomVectorWide(1280) })),
    ...Array.from({ length: 50 }, (_, i) => ({ key: f.key('text', `title${i}`), vector: randomVectorWide(128) })),
  ]
  // A vector that is a view at a non-zero offset of a larger buffer must be written from its own bytes.
  const backing = randomVectorWide(128 * 3)
  entries.push({ key: f.key('text', 'view'), vector: backing.subarray(128, 256) })
  assert.equal(await f.l2.setMany(entries, 3600), entries.length)

  const got = await f.l2.getMany([...entries.map((e) => e.key), f.key('text', 'absent')], Date.now() + 1000)
  assert.equal(got.length, entries.length + 1)
  entries.forEach((e, i) => {
    const v = got[i]
    assert.ok(v, `hit ${i}`)
    assert.ok(bytesOf(v).equals(bytesOf(e.vector)), `entry ${i} bytes differ`)
  })
  assert.equal(got.at(-1), undefined)
})

test('values at odd offsets inside a reply decode exactly', async (t) => {
  const f = await fixture(t)
  const odd = f.key('text', 'odd')
  const vec = randomVectorWide(128)
  await admin.set(odd, 'x')
  await f.l2.setMany([{ key: f.key('text', 'v'), vector: vec }], 60)
  // Reply `*2 $1 x $512 …`: the vector starts 17 bytes into the socket chunk.
  const raw = await f.client.mgetBuffer(odd, f.key('text', 'v'))
  const buf = raw[1]
  assert.ok(buf)
  assert.notEqual(buf.byteOffset % 4, 0, 'the test needs an unaligned reply buffer')
  const [short, decoded] = await f.l2.getMany([odd, f.key('text', 'v')], Date.now() + 1000)
  assert.equal(short, undefined, 'a 1-byte value is a miss')
  assert.ok(decoded)
  assert.ok(bytesOf(decoded).equals(bytesOf(vec)))
})

test('getMany is one MGET whatever the number of keys', async (t) => {
  const f = await fixture(t)
  const stored = Array.from({ length: 300 }, (_, i) => ({ key: f.key('text', `t${i}`), vector: randomVectorWide(128) }))
  await f.l2.setMany(stored, 60)
  const keys = [...stored.map((e) => e.key), ...Array.from({ length: 700 }, (_, i) => f.key('image', `missing${i}`))]
  const mget = await commandCalls('mget')
  const get = await commandCalls('get')
  const got = await f.l2.getMany(keys, Date.now() + 1000)
  assert.equal(got.filter(Boolean).length, 300)
  assert.equal(await commandCalls('mget') - mget, 1)
  assert.equal(await commandCalls('get') - get, 0)
})

test('setMany writes with a TTL in one pipeline and skips vectors of the wrong length', async (t) => {
  const f = await fixture(t)
  const good = { key: f.key('image', 'a'), vector: randomVectorWide(1280) }
  const wrong = { key: f.key('image', 'b'), vector: randomVectorWide(128) }
  assert.equal(await f.l2.setMany([good, wrong], 120), 1)
  const pttl = await admin.pttl(good.key)
  assert.ok(pttl > 0 && pttl <= 120_000, `PTTL ${pttl}`)
  assert.equal(await admin.exists(wrong.key), 0)
  await assert.rejects(f.l2.setMany([good], 0), /TTL/)
})

test('a stored value of the wrong length is a miss and counted', async (t) => {
  const f = await fixture(t)
  const key = f.key('image', 'short')
  await admin.set(key, Buffer.alloc(128 * 4)) // a text-sized value under an image key
  const [v] = await f.l2.getMany([key], Date.now() + 1000)
  assert.equal(v, undefined)
  assert.equal(await counterValue(f.metrics.redisErrors, { op: 'get_invalid' }), 1)
})

test('a stalled Redis costs at most the deadline, reads as misses, and logs one warning', async (t) => {
  const f = await fixture(t)
  const e = { key: f.key('text', 'paused'), vector: randomVectorWide(128) }
  await f.l2.setMany([e], 60)
  await admin.call('CLIENT', 'PAUSE', '3000', 'ALL')
  const started = Date.now()
  const first = await f.l2.getMany([e.key], started + 60)
  const second = await f.l2.getMany([e.key], Date.now() + 30)
  const elapsed = Date.now() - started
  assert.deepEqual([first[0], second[0]], [undefined, undefined])
  // Generous on purpose (a busy machine delays timers): without the deadline both calls would wait
  // for the 3 s pause to end; with it they return long before, whatever the load.
  assert.ok(elapsed < 2000, `took ${elapsed} ms (deadlines 60 + 30 ms, pause 3000 ms)`)
  assert.equal(await counterValue(f.metrics.redisErrors, { op: 'get' }), 2)
  assert.deepEqual(f.logs.map((l) => l.level), ['warn'])

  await sleep(Math.max(0, started + 3100 - Date.now())) // pause over
  const [back] = await f.l2.getMany([e.key], Date.now() + 1000)
  assert.ok(back && bytesOf(back).equals(bytesOf(e.vector)))
  assert.deepEqual(f.logs.map((l) => l.level), ['warn', 'info'])
})

test('no time left means no Redis call and no error', async (t) => {
  const f = await fixture(t)
  const mget = await commandCalls('mget')
  assert.deepEqual(await f.l2.getMany([f.key('text', 'x')], Date.now() - 1), [undefined])
  assert.equal(await commandCalls('mget') - mget, 0)
  assert.equal(await counterValue(f.metrics.redisErrors, {}), 0)
})
