import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { type Cluster, Redis } from 'ioredis'
import { createClusterClient } from '../src/cache/redis-client.ts'
import { createMetrics, type Metrics } from '../src/metrics.ts'
import { partitionKeys, partitionOf } from '../src/queue/partition-keys.ts'
import { RedisQueue, type RedisQueueOptions } from '../src/queue/redis-queue.ts'
import type { EmbedJob } from '../src/queue/types.ts'
import { cacheJob, jobCount, recorder, recordingLog, until } from '../support/queue-harness.ts'
import { startRedisCluster, type ClusterNode, type RedisClusterHandle } from '../support/redis-cluster.ts'

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

/** A cluster client with the server's own options (createClusterClient: no offline queue, fail fast). */
function serverClient(): Cluster {
  const c = createClusterClient(cluster.seeds)
  c.on('error', () => undefined)
  clients.push(c)
  return c
}

function makeQueue(prefix: string, overrides: Partial<RedisQueueOptions> = {}): { queue: RedisQueue; metrics: Metrics } {
  const metrics = createMetrics({ defaultMetrics: false })
  const queue = new RedisQueue({
    redis: overrides.redis ?? client(), prefix, metrics, log: recordingLog(), versions: { image: 'v1', text: 'v1' }, maxAttempts: 3,
    backoff: { baseMs: 50, maxMs: 1_000 }, negativeTtlMs: 60_000, pollMs: 20, resendIntervalMs: 0, ...overrides,
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

/** Whether a replica (READONLY) of the master serving `job`'s partition holds the job's record. */
async function onReplica(prefix: string, job: EmbedJob): Promise<boolean> {
  const k = partitionKeys(prefix, job.modality, 'v1', partitionOf(job.key, 8))
  for (const node of cluster.nodes) {
    if (await node.role() !== 'slave') continue
    const r = new Redis({ port: node.port, lazyConnect: true, maxRetriesPerRequest: 0 })
    r.on('error', () => undefined)
    try {
      await r.connect()
      await r.call('READONLY')
      if (await r.hexists(k.jobs, job.key) === 1) return true
    } catch {
      // MOVED: this replica's master does not serve the slot
    } finally {
      r.disconnect()
    }
  }
  return false
}

/** The replica node of the master serving `port`. */
async function replicaOf(port: number): Promise<ClusterNode | undefined> {
  for (const node of cluster.nodes) {
    const r = new Redis({ port: node.port, lazyConnect: true, maxRetriesPerRequest: 0 })
    r.on('error', () => undefined)
    try {
      await r.connect()
      const role = await r.call('ROLE') as [string, string, number]
      if (role[0] === 'slave' && Number(role[2]) === port) return node
    } finally {
      r.disconnect()
    }
  }
  return undefined
}

test('redis cluster queue: with WAIT 1 a new job counts queued once its replica holds it; while the replica hangs it is deferred, then queued', async (t) => {
  const prefix = `qc-${randomBytes(4).toString('hex')}`
  const { queue, metrics } = makeQueue(prefix, { waitReplicas: 1, outbox: { backoff: { baseMs: 20, maxMs: 200 } } })
  t.after(() => queue.close({ drain: false, timeoutMs: 100 }))
  await queue.whenReady(10_000)
  const jobs = Array.from({ length: 12 }, (_, i) => cacheJob(prefix, `w${i}`, i % 2 === 0 ? 'text' : 'image'))
  // On a loaded machine a replica may acknowledge after WAIT's 100 ms: such a job is deferred and
  // sent again from the outbox, so every job ends queued once, and each is counted exactly once.
  const first = await queue.enqueue(jobs)
  assert.equal(await jobCount(metrics, 'queued'), first)
  assert.equal(await jobCount(metrics, 'deferred'), 12 - first)
  await until(async () => await jobCount(metrics, 'queued') === 12)
  for (const job of jobs) assert.ok(await onReplica(prefix, job), `${job.key} on its master's replica once counted queued`)
  const deferredBefore = await jobCount(metrics, 'deferred')

  const admin = client()
  const job = cacheJob(prefix, 'replica-hangs')
  const slot = Number(await admin.call('CLUSTER', 'KEYSLOT', partitionKeys(prefix, 'image', 'v1', partitionOf(job.key, 8)).jobs))
  const replica = await replicaOf(await masterOfSlot(admin, slot))
  assert.ok(replica, 'the master has a replica')
  replica.signal('SIGSTOP')
  try {
    assert.equal(await queue.enqueue([job]), 0, 'no replica acknowledged it: not queued yet')
    assert.equal(await jobCount(metrics, 'deferred'), deferredBefore + 1)
  } finally {
    replica.signal('SIGCONT')
  }
  await until(async () => await jobCount(metrics, 'queued') === 13)
  assert.ok(await onReplica(prefix, job))
  assert.equal(await jobCount(metrics, 'unknown') + await jobCount(metrics, 'dropped') + await jobCount(metrics, 'deduplicated'), 0)
})

test('redis cluster queue: a partition\'s slot moved to another master (resharding) while its jobs are queued and consumed: every job runs once, none lost or left behind', async (t) => {
  const prefix = `qc-${randomBytes(4).toString('hex')}`
  // The server's own client options (ASK and TRYAGAIN are followed by ioredis); no WAIT, so only the move is tested.
  const redis = serverClient()
  const { queue, metrics } = makeQueue(prefix, { redis })
  t.after(() => queue.close({ drain: false, timeoutMs: 100 }))
  await queue.whenReady(10_000)
  const r = recorder()
  queue.start(r.handler, { concurrency: 2, batchSize: 8, batchWaitMs: 0 })
  // Every job in partition 0, so all the traffic goes to the slot that moves.
  const jobs: EmbedJob[] = []
  for (let i = 0; jobs.length < 120; i++) {
    const j = cacheJob(prefix, `move-${i}`)
    if (partitionOf(j.key, 8) === 0) jobs.push(j)
  }
  const k = partitionKeys(prefix, 'image', 'v1', 0)
  const admin = client()
  const slot = Number(await admin.call('CLUSTER', 'KEYSLOT', k.jobs))
  const from = await masterOfSlot(admin, slot)
  const masters = await cluster.masters()
  const to = masters.find((m) => m.port !== from)
  assert.ok(to, 'another master to move the slot to')
  const node = (port: number): Redis => new Redis({ host: '127.0.0.1', port, lazyConnect: false })
  const src = node(from)
  const dst = node(to.port)
  const all = masters.map((m) => node(m.port))
  t.after(() => { for (const c of [src, dst, ...all]) c.disconnect() })
  const [srcId, dstId] = await Promise.all([src.call('CLUSTER', 'MYID'), dst.call('CLUSTER', 'MYID')]) as [string, string]

  assert.equal(await queue.enqueue(jobs.slice(0, 60)), 60)
  // Redis Cluster's slot migration, by hand (what `redis-cli --cluster reshard` does per slot).
  await dst.call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', srcId)
  await src.call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', dstId)
  // Offered while the slot migrates: a try that meets ASK or TRYAGAIN is followed or resent.
  const during = queue.enqueue(jobs.slice(60))
  const moved = new Set<string>()
  for (;;) {
    const keys = await src.call('CLUSTER', 'GETKEYSINSLOT', slot, 1000) as string[]
    if (keys.length === 0) break
    await src.call('MIGRATE', '127.0.0.1', to.port, '', 0, 5000, 'KEYS', ...keys)
    for (const key of keys) moved.add(key)
  }
  assert.ok(moved.has(k.jobs), 'the partition held jobs when it moved')
  await dst.call('CLUSTER', 'SETSLOT', slot, 'NODE', dstId)
  await src.call('CLUSTER', 'SETSLOT', slot, 'NODE', dstId)
  for (const c of all) await c.call('CLUSTER', 'SETSLOT', slot, 'NODE', dstId)
  await during
  await until(async () => await masterOfSlot(admin, slot) === to.port)

  await until(async () => new Set(r.seen).size === 120, 60_000)
  await until(async () => await jobCount(metrics, 'done') === 120)
  assert.deepEqual([...r.seen].sort(), jobs.map((j) => j.key).sort(), 'every job run, each once')
  assert.equal(await jobCount(metrics, 'queued'), 120)
  assert.equal(await jobCount(metrics, 'dropped') + await jobCount(metrics, 'unknown') + await jobCount(metrics, 'failed'), 0)
  assert.equal(await redis.hlen(k.jobs) + await redis.zcard(k.wait) + await redis.zcard(k.active), 0, 'nothing left in the moved partition')
  assert.equal(await dst.hlen(k.jobs), 0)
})

// Last in this file: it kills a master (the node comes back as a replica, the cluster healthy again).
test('redis cluster queue: an enqueue to a master that just died waits in the outbox and is queued and run after the failover', async (t) => {
  const prefix = `qc-${randomBytes(4).toString('hex')}`
  // The server's own client options (no offline queue, fail fast), WAIT 1 as the server's cluster default.
  const { queue, metrics } = makeQueue(prefix, { redis: serverClient(), waitReplicas: 1 })
  t.after(() => queue.close({ drain: false, timeoutMs: 100 }))
  await queue.whenReady(10_000)
  const r = recorder()
  queue.start(r.handler, { concurrency: 1, batchSize: 8, batchWaitMs: 0 })
  const admin = client()
  const job = cacheJob(prefix, 'during-failover')
  const slot = Number(await admin.call('CLUSTER', 'KEYSLOT', partitionKeys(prefix, 'image', 'v1', partitionOf(job.key, 8)).jobs))
  const port = await masterOfSlot(admin, slot)
  const victim = cluster.nodes.find((n) => n.port === port)
  assert.ok(victim, `master :${port} serves slot ${slot}`)
  await victim.kill()
  try {
    assert.equal(await queue.enqueue([job]), 0, 'its master is dead: not queued now')
    assert.equal(await jobCount(metrics, 'deferred'), 1)
    // Nobody offers it again: the outbox sends it once the replica is promoted.
    await until(() => r.seen.includes(job.key), 60_000)
    // Its new master has no replica until the old one returns: it acknowledges alone (the slot map lists none).
    await until(async () => await jobCount(metrics, 'queued') === 1, 30_000)
    assert.equal(await jobCount(metrics, 'dropped') + await jobCount(metrics, 'unknown'), 0)
    await until(async () => await jobCount(metrics, 'done') === 1)
  } finally {
    await victim.start()
    await cluster.waitHealthy(60_000)
  }
})
