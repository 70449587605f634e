import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { Cluster } from 'ioredis'
import { createMetrics, type Metrics } from '../src/metrics.ts'
import { partitionKeys } from '../src/queue/partition-keys.ts'
import { RedisQueue } from '../src/queue/redis-queue.ts'
import { cacheJob, jobCount, recorder, recordingLog, until } from '../support/queue-harness.ts'
import { startRedisCluster, type RedisClusterHandle } from '../support/redis-cluster.ts'

// The durable queue on a real Redis Cluster (3 masters + 3 replicas): every script touches one
// partition, i.e. one slot, and the partitions of one queue spread over the masters.

let cluster: RedisClusterHandle
const clients: Cluster[] = []

before(async () => { cluster = await startRedisCluster() })
after(async () => {
  for (const c of clients) c.disconnect()
  await cluster.stop()
})

function client(): Cluster {
  const c = cluster.client()
  c.on('error', () => undefined)
  clients.push(c)
  return c
}

function makeQueue(prefix: string): { queue: RedisQueue; metrics: Metrics } {
  const metrics = createMetrics({ defaultMetrics: false })
  const queue = new RedisQueue({
    redis: client(), prefix, metrics, log: recordingLog(), versions: { image: 'v1', text: 'v1' }, maxAttempts: 3,
    backoff: { baseMs: 50, maxMs: 1_000 }, negativeTtlMs: 60_000, pollMs: 20, resendIntervalMs: 0,
  })
  return { queue, metrics }
}

/** Master port serving a slot, from CLUSTER SLOTS. */
async function masterOfSlot(admin: Cluster, slot: number): Promise<number> {
  const slots = await admin.call('CLUSTER', 'SLOTS') as Array<[number, number, [string, number]]>
  const range = slots.find(([lo, hi]) => slot >= lo && slot <= hi)
  return range?.[2][1] ?? -1
}

test('redis cluster queue: jobs spread over partitions on several masters are all consumed, each exactly once', async (t) => {
  const prefix = `qc-${randomBytes(4).toString('hex')}`
  const a = makeQueue(prefix)
  t.after(() => a.queue.close({ drain: false, timeoutMs: 100 }))
  await a.queue.whenReady(10_000)
  const admin = client()
  const masters = new Set<number>()
  for (let p = 0; p < 8; p++) {
    const k = partitionKeys(prefix, 'image', 'v1', p)
    const slots = await Promise.all([k.wait, k.jobs, k.delayed, k.active, k.owner, k.born, k.negative('x')]
      .map((key) => admin.call('CLUSTER', 'KEYSLOT', key)))
    assert.equal(new Set(slots).size, 1, `partition ${p}: all its keys in one slot`)
    masters.add(await masterOfSlot(admin, Number(slots[0])))
  }
  assert.ok(masters.size >= 2, `8 partitions on ${masters.size} master(s)`)
  const jobs = Array.from({ length: 200 }, (_, i) => cacheJob(prefix, `j${i}`, i % 4 === 0 ? 'text' : 'image'))
  assert.equal(await a.queue.enqueue(jobs), 200)
  assert.equal(await a.queue.depth(), 200)
  const r = recorder()
  a.queue.start(r.handler, { concurrency: 2, batchSize: 16, batchWaitMs: 0 })
  await until(async () => await jobCount(a.metrics, 'done') === 200, 30_000)
  assert.deepEqual([...r.seen].sort(), jobs.map((j) => j.key).sort())
  assert.equal(await a.queue.depth(), 0)
})

test('redis cluster queue: two instances enqueueing the same jobs admit each once and handle it once', async (t) => {
  const prefix = `qc-${randomBytes(4).toString('hex')}`
  const a = makeQueue(prefix)
  const b = makeQueue(prefix)
  t.after(() => Promise.all([a.queue.close({ drain: false, timeoutMs: 100 }), b.queue.close({ drain: false, timeoutMs: 100 })]))
  await Promise.all([a.queue.whenReady(10_000), b.queue.whenReady(10_000)])
  const jobs = Array.from({ length: 120 }, (_, i) => cacheJob(prefix, `d${i}`, i % 3 === 0 ? 'text' : 'image'))
  const [na, nb] = await Promise.all([a.queue.enqueue(jobs), b.queue.enqueue(jobs)])
  assert.equal(na + nb, 120)
  assert.equal(await jobCount(a.metrics, 'deduplicated') + await jobCount(b.metrics, 'deduplicated'), 120)
  const ra = recorder()
  const rb = recorder()
  a.queue.start(ra.handler, { concurrency: 2, batchSize: 8, batchWaitMs: 0 })
  b.queue.start(rb.handler, { concurrency: 2, batchSize: 8, batchWaitMs: 0 })
  await until(async () => await jobCount(a.metrics, 'done') + await jobCount(b.metrics, 'done') === 120, 30_000)
  assert.deepEqual([...ra.seen, ...rb.seen].sort(), jobs.map((j) => j.key).sort(), 'each job handled exactly once')
  assert.ok(ra.seen.length > 0 && rb.seen.length > 0, `both instances took work (${ra.seen.length} / ${rb.seen.length})`)
})
