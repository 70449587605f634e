import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { partitionKeys, partitionOf } from '../src/queue/partition-keys.ts'
import { build, waitFor } from '../support/app.ts'
import { jobCount } from '../support/queue-harness.ts'
import { startRedis } from '../support/redis.ts'

// The real app on a real Redis whose ACL first lets it write queue keys but only read cache keys:
// the embedding is computed, Redis refuses the vector, so the job must be retried, not done.

async function textEmbeds(server: FastifyInstance): Promise<number> {
  const { values } = await server.metrics.embedSeconds.get()
  return values.filter((v) => v.metricName?.endsWith('_count') === true && v.labels.modality === 'text').reduce((s, v) => s + v.value, 0)
}

test('durable queue: a job is done only once its vector is confirmed in Redis; a refused write is retried and the L1 copy is written later', async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  const admin = new Redis(redis.url)
  t.after(() => admin.disconnect())
  const prefix = `ds-${randomBytes(4).toString('hex')}`
  // Queue keys writable, cache keys read-only (%R~): SET of a vector fails with NOPERM.
  await admin.call('ACL', 'SETUSER', 'app', 'on', '>secret', `~${prefix}:q:*`, `%R~${prefix}:*`, '+@all')
  const server = await build(t, { REDIS_URL: `redis://app:secret@127.0.0.1:${redis.port}`, REDIS_PREFIX: prefix })
  await waitFor(async () => ((await server.inject({ url: '/readyz' })).statusCode === 200 ? true : undefined), 10_000)

  const title = 'a title whose vector redis refuses at first'
  const key = server.keyOf('text', title)
  const res = await server.inject({ method: 'POST', url: '/predict', payload: { items: [{ id: 'a', title }] } })
  assert.equal(res.statusCode, 200)
  await waitFor(async () => (await jobCount(server.metrics, 'retried') >= 1 ? true : undefined), 20_000)
  assert.equal(await jobCount(server.metrics, 'done'), 0, 'not done while Redis refuses the vector')
  assert.equal(await admin.exists(key), 0)
  const k = partitionKeys(prefix, 'text', key.split(':').at(-2) ?? '', partitionOf(key, server.config.QUEUE_PARTITIONS))
  const record = JSON.parse(await admin.hget(k.jobs, key) ?? '{}') as { a?: number }
  assert.ok((record.a ?? 0) >= 1, 'the refused write counted as a failed attempt of the job')
  const computed = await textEmbeds(server)

  await admin.call('ACL', 'SETUSER', 'app', `~${prefix}:*`) // cache keys writable now
  await waitFor(async () => (await jobCount(server.metrics, 'done') === 1 ? true : undefined), 20_000)
  assert.equal(await admin.exists(key), 1, 'done means the vector is in Redis')
  assert.equal(await textEmbeds(server), computed, 'the retry wrote the vector this instance held in L1, without computing it again')
  assert.equal(await admin.hexists(k.jobs, key), 0)
})
