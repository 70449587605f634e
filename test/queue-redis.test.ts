import { after, before, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { createMetrics, type Metrics } from '../src/metrics.ts'
import { partitionKeys, partitionOf } from '../src/queue/partition-keys.ts'
import { RedisQueue, type RedisQueueOptions } from '../src/queue/redis-queue.ts'
import type { EmbedJob, Modality } from '../src/queue/types.ts'
import { cacheJob, jobCount, OK, recorder, recordingLog, redisErrors, until, type LogLine } from '../support/queue-harness.ts'
import { startRedis, type RedisServer } from '../support/redis.ts'

let server: RedisServer

before(async () => { server = await startRedis() })
after(async () => { await server.stop() })

function client(): Redis {
  const redis = new Redis(server.url, { retryStrategy: () => 50 })
  // Connection errors are expected while a test kills Redis; commands report their own failures.
  redis.on('error', () => undefined)
  return redis
}

interface Made { readonly queue: RedisQueue; readonly metrics: Metrics; readonly log: LogLine[] }
interface Harness {
  readonly prefix: string
  readonly admin: Redis
  job(name: string, modality?: Modality, version?: string): EmbedJob
  queue(overrides?: Partial<RedisQueueOptions>): Promise<Made>
  /** The partition keys a job lives under (P = 8, the default). */
  keysOf(job: EmbedJob, version?: string): ReturnType<typeof partitionKeys>
}

const PARTITIONS = 8

/** A unique prefix per test; queues closed and the prefix's keys deleted after it. */
function harness(t: TestContext): Harness {
  const prefix = `qt-${randomBytes(4).toString('hex')}`
  const admin = client()
  const queues: RedisQueue[] = []
  const clients = [admin]
  // One hook, in order: queues first, then keys, then connections.
  t.after(async () => {
    await Promise.all(queues.map((q) => q.close({ drain: false, timeoutMs: 100 })))
    const keys = await admin.keys(`${prefix}:*`)
    if (keys.length > 0) await admin.del(...keys)
    for (const c of clients) c.disconnect()
  })
  return {
    prefix, admin,
    job: (name, modality = 'image', version = 'v1') => cacheJob(prefix, name, modality, version),
    keysOf: (job, version = 'v1') => partitionKeys(prefix, job.modality, version, partitionOf(job.key, PARTITIONS)),
    queue: async (overrides = {}) => {
      const metrics = createMetrics({ defaultMetrics: false })
      const redis = client()
      clients.push(redis)
      const log = recordingLog()
      const queue = new RedisQueue({
        redis, prefix, metrics, log, versions: { image: 'v1', text: 'v1' }, maxAttempts: 3,
        backoff: { baseMs: 50, maxMs: 1_000 }, negativeTtlMs: 60_000, pollMs: 20, random: () => 0,
        resendIntervalMs: 0, ...overrides,
      })
      queues.push(queue)
      await queue.whenReady()
      return { queue, metrics, log: log.lines }
    },
  }
}

const CONSUME = { concurrency: 2, batchSize: 4, batchWaitMs: 0 }

test('redis queue: two instances on one Redis handle a job enqueued by both exactly once; nothing is left behind', async (t) => {
  const h = harness(t)
  const a = await h.queue()
  const b = await h.queue()
  const jobs = Array.from({ length: 24 }, (_, i) => h.job(`k${i}`, i % 3 === 0 ? 'text' : 'image'))
  const [na, nb] = await Promise.all([a.queue.enqueue(jobs), b.queue.enqueue(jobs)])
  assert.equal(na + nb, 24, 'the job record admits each key once across instances')
  assert.equal(await a.queue.enqueue(jobs), 0)
  assert.equal(await a.queue.depth(), 24)
  const ra = recorder()
  const rb = recorder()
  a.queue.start(ra.handler, CONSUME)
  b.queue.start(rb.handler, CONSUME)
  await until(async () => await jobCount(a.metrics, 'done') + await jobCount(b.metrics, 'done') === 24)
  assert.deepEqual([...ra.seen, ...rb.seen].sort(), jobs.map((j) => j.key).sort(), 'every key handled exactly once')
  assert.equal(await jobCount(a.metrics, 'deduplicated') + await jobCount(b.metrics, 'deduplicated'), 48)
  assert.equal(await a.queue.depth(), 0)
  // Left: negative markers and the done set (it expires after the done window).
  const left = (await h.admin.keys(`${h.prefix}:q:*`)).filter((k) => !k.includes(':neg:') && !k.endsWith(':done'))
  assert.deepEqual(left, [], 'no waiting, leased, owner, born or record keys remain')
  assert.ok(await h.admin.pttl(h.keysOf(jobs[1] as EmbedJob).done) > 0, 'the done set expires')
  assert.equal(await a.queue.enqueue([jobs[1] as EmbedJob]), 1, 'a finished key can be enqueued again')
})

test('redis queue: jobs spread over the partitions; a batch is filled across them (10 jobs, size 4 → 4, 4, 2), one modality each', async (t) => {
  const h = harness(t)
  const { queue } = await h.queue()
  const jobs = [...Array.from({ length: 10 }, (_, i) => h.job(`i${i}`)), h.job('t1', 'text')]
  await queue.enqueue(jobs)
  const used = new Set(jobs.filter((j) => j.modality === 'image').map((j) => h.keysOf(j).index))
  assert.ok(used.size >= 4, `10 keys over 8 partitions used ${used.size}`)
  for (const j of jobs) assert.equal(await h.admin.zscore(h.keysOf(j).wait, j.key) !== null, true)
  const sizes: Record<Modality, number[]> = { image: [], text: [] }
  queue.start(async (batch) => {
    const modality = batch[0]?.modality ?? 'image'
    assert.ok(batch.every((j) => j.modality === modality))
    sizes[modality].push(batch.length)
    return batch.map(() => OK)
  }, { concurrency: 1, batchSize: 4, batchWaitMs: 0 })
  await until(() => sizes.image.length === 3 && sizes.text.length === 1)
  assert.deepEqual(sizes, { image: [4, 4, 2], text: [1] })
})

test('redis queue: a modality can have its own number of consumer loops (titles 1, images 3)', async (t) => {
  const h = harness(t)
  const { queue } = await h.queue()
  await queue.enqueue([...Array.from({ length: 8 }, (_, i) => h.job(`i${i}`)), ...Array.from({ length: 8 }, (_, i) => h.job(`t${i}`, 'text'))])
  const running: Record<Modality, number> = { image: 0, text: 0 }
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  queue.start(async (batch) => {
    const m = batch[0]?.modality ?? 'image'
    running[m]++
    await gate
    running[m]--
    return batch.map(() => OK)
  }, { concurrency: 3, modalityConcurrency: { text: 1 }, batchSize: 1, batchWaitMs: 0 })
  await until(() => running.image === 3 && running.text === 1)
  await sleep(100) // the idle loops poll every 20 ms: none takes a fourth image or a second title
  assert.deepEqual(running, { image: 3, text: 1 })
  release()
  await until(async () => await queue.depth() === 0 && running.image === 0 && running.text === 0)
})

test('redis queue: 100 keys asked for again and again are handled before a backlog of 50,000 one-off jobs', async (t) => {
  const h = harness(t)
  const { queue } = await h.queue({ enqueueTimeoutMs: 30_000 })
  const hot = Array.from({ length: 100 }, (_, i) => h.job(`hot${i}`))
  // First seen before the backlog: by age alone they would come last.
  assert.equal(await queue.enqueue(hot), 100)
  for (let c = 0; c < 50; c++) {
    assert.equal(await queue.enqueue(Array.from({ length: 1000 }, (_, i) => h.job(`cold${c * 1000 + i}`))), 1000)
  }
  for (let r = 0; r < 4; r++) assert.equal(await queue.enqueue(hot), 0, 'repeats raise demand, never add jobs')
  const seen: string[] = []
  queue.start(async (batch) => { seen.push(...batch.map((j) => j.key)); return batch.map(() => OK) },
    { concurrency: 1, batchSize: 16, batchWaitMs: 0 })
  await until(() => seen.length >= 400)
  await queue.close({ drain: false, timeoutMs: 5_000 })
  const hotKeys = new Set(hot.map((j) => j.key))
  const partition = (key: string): number => partitionOf(key, PARTITIONS)
  // Within a partition the order is strict: every hot key before any backlog key.
  for (let p = 0; p < PARTITIONS; p++) {
    const order = seen.filter((k) => partition(k) === p)
    const lastHot = order.map((k) => hotKeys.has(k)).lastIndexOf(true)
    const firstCold = order.findIndex((k) => !hotKeys.has(k))
    assert.ok(firstCold === -1 || lastHot < firstCold, `partition ${p}: a backlog job ran before a hot one`)
  }
  // Across partitions a batch takes ceil(16 / P) = 2 from each first: the partition with the most
  // hot keys (h) needs ceil(h / 2) batches, so every hot key is handled within that many batches.
  const perPartition = Array.from({ length: PARTITIONS }, (_, p) => hot.filter((j) => partition(j.key) === p).length)
  const bound = Math.ceil(Math.max(...perPartition) / 2) * 16
  assert.equal(seen.slice(0, bound).filter((k) => hotKeys.has(k)).length, 100, `hot keys per partition ${perPartition.join(',')}`)
})

test('redis queue: jobs older than the maximum age are dropped unrun and counted expired', async (t) => {
  const h = harness(t)
  const { queue, metrics } = await h.queue({ maxAgeMs: 200 })
  const old = Array.from({ length: 5 }, (_, i) => h.job(`old${i}`))
  await queue.enqueue(old)
  await sleep(300) // older than the maximum age before any consumer looks
  const fresh = h.job('fresh')
  await queue.enqueue([fresh])
  const r = recorder()
  queue.start(r.handler, CONSUME)
  await until(async () => await jobCount(metrics, 'expired') === 5 && await jobCount(metrics, 'done') === 1)
  assert.deepEqual(r.seen, [fresh.key])
  for (const j of old) assert.equal(await h.admin.hexists(h.keysOf(j).jobs, j.key), 0, 'the expired record is gone')
  assert.equal(await queue.enqueue([old[0] as EmbedJob]), 1, 'an expired key can be queued again')
})

test('redis queue: an enqueue whose reply does not come in time is deferred, retried from the outbox and counted queued once it is found there', async (t) => {
  const h = harness(t)
  const { queue, metrics } = await h.queue({ enqueueTimeoutMs: 100 })
  const paused = h.job('paused')
  await h.admin.call('CLIENT', 'PAUSE', '600', 'WRITE')
  assert.equal(await queue.enqueue([paused]), 0)
  assert.equal(await jobCount(metrics, 'deferred'), 1)
  assert.equal(await jobCount(metrics, 'unknown') + await jobCount(metrics, 'dropped'), 0, 'not given up')
  // The paused write lands after the pause; the outbox's retry finds the job there: queued, once.
  await until(async () => await jobCount(metrics, 'queued') === 1)
  assert.equal(await h.admin.hexists(h.keysOf(paused).jobs, paused.key), 1)
  assert.equal(await jobCount(metrics, 'deduplicated'), 0, 'its own earlier try, not another instance\'s job')
  assert.ok(await redisErrors(metrics, 'queue_enqueue') >= 1)
})

test('redis queue: a resend of a job its unanswered first try queued, and that another instance has finished since, is not run again', async (t) => {
  const h = harness(t)
  // A: the producer; its first retry round comes 2 s after the try (equal jitter, random 0).
  const a = await h.queue({ enqueueTimeoutMs: 100, outbox: { backoff: { baseMs: 4_000, maxMs: 4_000 } } })
  const b = await h.queue()
  const rb = recorder()
  b.queue.start(rb.handler, CONSUME)
  const job = h.job('finished-before-resend')
  await h.admin.call('CLIENT', 'PAUSE', '300', 'WRITE')
  assert.equal(await a.queue.enqueue([job]), 0, 'no reply in time')
  assert.equal(await jobCount(a.metrics, 'deferred'), 1)
  // The paused write lands: B runs the job and finishes it; then B stops consuming.
  await until(async () => await jobCount(b.metrics, 'done') === 1)
  await b.queue.close({ drain: true, timeoutMs: 5_000 })
  // A's resend finds it finished: counted queued (its first try queued it), not queued again.
  await until(async () => await jobCount(a.metrics, 'queued') === 1)
  assert.equal(await h.admin.hexists(h.keysOf(job).jobs, job.key), 0, 'not queued a second time')
  assert.ok(Number(await h.admin.zscore(h.keysOf(job).done, job.key)) > 0, 'remembered as done')
  assert.deepEqual(rb.seen, [job.key], 'run once')
  assert.equal(await jobCount(a.metrics, 'deduplicated') + await jobCount(a.metrics, 'unknown') + await jobCount(a.metrics, 'dropped'), 0)
  // A fresh offer does not consult the done set: a finished key whose vector went missing is queued again.
  assert.equal(await a.queue.enqueue([job]), 1)
})

test('redis queue: a refused enqueue is retried until accepted; past the outbox\'s age it is given up and counted dropped', async (t) => {
  const h = harness(t)
  const short = await h.queue({ outbox: { maxAgeMs: 300, backoff: { baseMs: 20, maxMs: 50 } } })
  const patient = await h.queue({ outbox: { backoff: { baseMs: 20, maxMs: 50 } } })
  const later = h.job('accepted-later')
  const never = h.job('never-accepted')
  await h.admin.config('SET', 'maxmemory', '1')
  try {
    assert.equal(await short.queue.enqueue([never]), 0)
    await until(async () => await jobCount(short.metrics, 'dropped') === 1)
    assert.equal(await h.admin.hexists(h.keysOf(never).jobs, never.key), 0)
    assert.equal(await jobCount(short.metrics, 'deferred'), 1, 'held once, however many retries')
    assert.equal(await patient.queue.enqueue([later]), 0)
    await until(async () => await redisErrors(patient.metrics, 'queue_enqueue') >= 3) // refused on retries too
  } finally {
    await h.admin.config('SET', 'maxmemory', '0')
  }
  await until(async () => await jobCount(patient.metrics, 'queued') === 1)
  assert.equal(await h.admin.hexists(h.keysOf(later).jobs, later.key), 1)
  assert.equal(await jobCount(patient.metrics, 'deferred'), 1)
  assert.equal(await jobCount(patient.metrics, 'dropped'), 0)
})

test('redis queue: a full partition takes a new job in place of its least requested waiting one (counted evicted); jobs asked for more are kept', async (t) => {
  const h = harness(t)
  const { queue, metrics, log } = await h.queue({ partitions: 1, capacity: 3 })
  const k = partitionKeys(h.prefix, 'image', 'v1', 0)
  const [old, hot1, hot2, fresh, late] = ['old', 'hot1', 'hot2', 'fresh', 'late'].map((n) => h.job(n)) as [EmbedJob, EmbedJob, EmbedJob, EmbedJob, EmbedJob]
  assert.equal(await queue.enqueue([old]), 1)
  await sleep(5) // Redis time moves on: `old`'s one request has decayed below a request now
  assert.equal(await queue.enqueue([hot1, hot2]), 2)
  for (let i = 0; i < 3; i++) assert.equal(await queue.enqueue([hot1, hot2]), 0, 'asked for again: demand raised')
  await sleep(5)
  assert.equal(await queue.enqueue([fresh]), 1, 'full, but it outranks the least requested waiting job')
  assert.equal(await jobCount(metrics, 'evicted'), 1)
  assert.deepEqual((await h.admin.zrange(k.wait, 0, -1)).sort(), [fresh, hot1, hot2].map((j) => j.key).sort())
  assert.equal(await h.admin.hexists(k.jobs, old.key), 0, 'the evicted job leaves no trace')
  assert.equal(await h.admin.zscore(k.born, old.key), null)
  // Every waiting job now counts at least one request as recent as a new one: the new one is refused.
  for (let i = 0; i < 3; i++) await queue.enqueue([fresh])
  assert.equal(await queue.enqueue([late]), 0)
  assert.equal(await jobCount(metrics, 'dropped'), 1)
  assert.equal(await jobCount(metrics, 'evicted'), 1)
  assert.equal(await h.admin.hlen(k.jobs), 3)
  assert.equal(log.length, 0)
})

test('redis queue: the outbox is bounded: a failed job past its capacity is dropped at once', async (t) => {
  const h = harness(t)
  const { queue, metrics } = await h.queue({ outbox: { maxJobs: 2 } })
  await h.admin.config('SET', 'maxmemory', '1')
  try {
    await queue.enqueue([h.job('o1'), h.job('o2'), h.job('o3'), h.job('o4')])
  } finally {
    await h.admin.config('SET', 'maxmemory', '0')
  }
  assert.equal(await jobCount(metrics, 'deferred'), 2)
  assert.equal(await jobCount(metrics, 'dropped'), 2)
  await until(async () => await jobCount(metrics, 'queued') === 2)
})

test('redis queue: a malformed record is removed with every trace; a malformed key no longer blocks its job', async (t) => {
  const h = harness(t)
  const { queue, metrics } = await h.queue()
  const bad = h.job('bad')
  const orphan = h.job('orphan')
  const k = h.keysOf(bad)
  await h.admin.hset(k.jobs, bad.key, 'not json')
  await h.admin.zadd(k.wait, 1, bad.key)
  await h.admin.zadd(k.born, Date.now(), bad.key) // young: removed as malformed, not as expired
  await h.admin.zadd(h.keysOf(orphan).wait, 1, orphan.key) // waiting without a record
  const r = recorder()
  queue.start(r.handler, CONSUME)
  await until(async () => await redisErrors(metrics, 'queue_malformed') === 2)
  assert.deepEqual(r.seen, [])
  assert.equal(await h.admin.zcard(k.wait) + await h.admin.zcard(k.born) + await h.admin.hlen(k.jobs), 0)
  assert.equal(await h.admin.zcard(h.keysOf(orphan).wait), 0)
  // Written again by hand, a malformed record is replaced at the next enqueue, not deduplicated against.
  await h.admin.hset(k.jobs, bad.key, '{"i":1}')
  assert.equal(await queue.enqueue([bad]), 1)
  await until(() => r.seen.includes(bad.key))
})

test('redis queue: queues of two encoder versions on one Redis never hand a job to the other version\'s consumer', async (t) => {
  const h = harness(t)
  const a = await h.queue({ versions: { image: 'vA', text: 'v1' } })
  const b = await h.queue({ versions: { image: 'vB', text: 'v1' } })
  const ofA = Array.from({ length: 20 }, (_, i) => h.job(`a${i}`, 'image', 'vA'))
  const ofB = Array.from({ length: 20 }, (_, i) => h.job(`b${i}`, 'image', 'vB'))
  // Each instance enqueues misses of both versions (e.g. during a rolling deploy behind one balancer).
  assert.equal(await a.queue.enqueue([...ofA.slice(0, 10), ...ofB.slice(0, 10)]), 20)
  assert.equal(await b.queue.enqueue([...ofA.slice(10), ...ofB.slice(10)]), 20)
  const ra = recorder()
  const rb = recorder()
  a.queue.start(ra.handler, CONSUME)
  b.queue.start(rb.handler, CONSUME)
  await until(() => ra.seen.length === 20 && rb.seen.length === 20)
  await sleep(100) // a few more polls of every partition
  assert.deepEqual(ra.seen.sort(), ofA.map((j) => j.key).sort())
  assert.deepEqual(rb.seen.sort(), ofB.map((j) => j.key).sort())
  assert.ok(h.keysOf(ofA[0] as EmbedJob, 'vA').wait.includes(':vA:'), 'the version is part of every queue key')
})

test('redis queue: a batch slower than the lease is renewed, not reclaimed: handled once', async (t) => {
  const h = harness(t)
  // Short enough to expire several times over while the batch runs; long enough that a loaded
  // machine (load average 20 on 2 cores seen here) still renews within it.
  const leaseMs = 1_500
  const slow = await h.queue({ leaseMs })
  const other = await h.queue({ leaseMs })
  const j = h.job('slow')
  await slow.queue.enqueue([j])
  let release: () => void = () => undefined
  const seenSlow: string[] = []
  slow.queue.start(async (batch) => {
    seenSlow.push(...batch.map((x) => x.key))
    await new Promise<void>((resolve) => { release = resolve })
    return batch.map(() => OK)
  }, { concurrency: 2, batchSize: 1, batchWaitMs: 0 })
  await until(() => seenSlow.length === 1)
  const ro = recorder()
  other.queue.start(ro.handler, { concurrency: 2, batchSize: 1, batchWaitMs: 0 }) // polls the partition from now on
  // Watch the lease expiry in Redis move forward three times, past the original lease.
  const active = h.keysOf(j).active
  const expiries: number[] = [Number(await h.admin.zscore(active, j.key))]
  await until(async () => {
    const e = Number(await h.admin.zscore(active, j.key))
    if (e > (expiries.at(-1) ?? 0)) expiries.push(e)
    return expiries.length >= 4
  })
  assert.ok((expiries.at(-1) ?? 0) - (expiries[0] ?? 0) >= leaseMs, `lease moved ${(expiries.at(-1) ?? 0) - (expiries[0] ?? 0)} ms`)
  release()
  await until(async () => await jobCount(slow.metrics, 'done') === 1)
  assert.deepEqual(seenSlow, [j.key], 'not re-run by its own instance')
  assert.deepEqual(ro.seen, [], 'not taken by another instance')
  assert.equal(await jobCount(other.metrics, 'done'), 0)
})

test('redis queue: transient failures are retried after a backoff and count attempts; permanent and exhausted ones are negative, logged at warn', async (t) => {
  const h = harness(t)
  const { queue, metrics, log } = await h.queue({ maxAttempts: 3, backoff: { baseMs: 20, maxMs: 100 }, negativeTtlMs: 5_000 })
  const [flaky, gone, doomed] = [h.job('flaky', 'text'), h.job('gone'), h.job('doomed')]
  const r = recorder((j, n) => {
    if (j.key === gone.key) return { ok: false, permanent: true, reason: 'HTTP 404' }
    if (j.key === doomed.key) return { ok: false, permanent: false, reason: 'timeout' }
    return n < 3 ? { ok: false, permanent: false, reason: 'flaky' } : OK
  })
  queue.start(r.handler, { concurrency: 1, batchSize: 4, batchWaitMs: 0 })
  await queue.enqueue([flaky, gone, doomed])
  await until(async () => await jobCount(metrics, 'done') === 1 && await jobCount(metrics, 'failed') === 2)
  assert.equal(r.seen.filter((k) => k === flaky.key).length, 3)
  assert.equal(r.seen.filter((k) => k === gone.key).length, 1, 'permanent: handled once')
  assert.equal(r.seen.filter((k) => k === doomed.key).length, 3, 'transient: maxAttempts runs')
  assert.equal(await jobCount(metrics, 'retried'), 4)
  assert.equal(await h.admin.get(h.keysOf(gone).negative(gone.key)), 'HTTP 404')
  assert.equal(await h.admin.get(h.keysOf(doomed).negative(doomed.key)), 'timeout', 'the reason is stored in the negative marker')
  const ttl = await h.admin.pttl(h.keysOf(gone).negative(gone.key))
  assert.ok(ttl > 0 && ttl <= 5_000, `negative TTL ${ttl}`)
  const warned = log.filter((l) => l.level === 'warn' && l.m === 'embedding job failed for good')
  assert.deepEqual(warned.map((l) => (l.o as { reason: string }).reason).sort(), ['HTTP 404', 'timeout'])
  assert.deepEqual(await queue.isNegative([gone.key, flaky.key]), [true, false])
  assert.equal(await queue.enqueue([gone, h.job('new')]), 1)
  assert.equal(await jobCount(metrics, 'negative'), 1)
})

test('redis queue: a job abandoned at close is handed back without an attempt; another instance runs it', async (t) => {
  const h = harness(t)
  const first = await h.queue()
  const j = h.job('abandoned')
  await first.queue.enqueue([j])
  let taken = 0
  first.queue.start(async () => { taken++; return new Promise<never>(() => undefined) }, { concurrency: 1, batchSize: 1, batchWaitMs: 0 })
  await until(() => taken === 1)
  await first.queue.close({ drain: false, timeoutMs: 50 })
  const k = h.keysOf(j)
  assert.equal(await h.admin.zscore(k.wait, j.key) !== null, true, 'back in waiting at once, not after a lease')
  assert.deepEqual(JSON.parse(await h.admin.hget(k.jobs, j.key) ?? '{}').a, 0, 'no attempt counted')
  const second = await h.queue()
  const r = recorder()
  second.queue.start(r.handler, CONSUME)
  await until(async () => await jobCount(second.metrics, 'done') === 1)
  assert.deepEqual(r.seen, [j.key])
  assert.equal(await jobCount(first.metrics, 'retried') + await jobCount(first.metrics, 'failed'), 0)
})

test('redis queue: a job whose leases keep expiring is failed without running again (lost leases, not attempts)', async (t) => {
  const h = harness(t)
  const { queue, metrics, log } = await h.queue({ maxLostLeases: 2 })
  const j = h.job('poison')
  await queue.enqueue([j])
  // As if three consumers had died holding it (TAKE counts each expired lease).
  const k = h.keysOf(j)
  const rec = JSON.parse(await h.admin.hget(k.jobs, j.key) ?? '{}') as Record<string, unknown>
  await h.admin.hset(k.jobs, j.key, JSON.stringify({ ...rec, c: 3 }))
  const r = recorder()
  queue.start(r.handler, CONSUME)
  await until(async () => (await queue.isNegative([j.key]))[0] === true)
  assert.deepEqual(r.seen, [])
  assert.equal(await jobCount(metrics, 'failed'), 1)
  assert.match(await h.admin.get(k.negative(j.key)) ?? '', /lease expired 3 times/)
  assert.ok(log.some((l) => l.level === 'warn'))
})

test('redis queue: queued jobs survive kill -9 of redis-server (AOF) and are handled once after restart', async (t) => {
  const h = harness(t)
  // The helper's AOF fsyncs every second; "always" makes every acknowledged enqueue durable.
  await h.admin.config('SET', 'appendfsync', 'always')
  const before = await h.queue()
  const jobs = Array.from({ length: 20 }, (_, i) => h.job(`d${i}`, i % 2 === 0 ? 'image' : 'text'))
  assert.equal(await before.queue.enqueue(jobs), 20)
  await server.kill()
  await server.start()
  await until(() => h.admin.status === 'ready')
  await h.admin.config('SET', 'appendfsync', 'always')
  const after = await h.queue()
  assert.equal(await after.queue.enqueue(jobs.slice(0, 5)), 0, 'the job records survived too')
  assert.equal(await after.queue.depth(), 20)
  const r = recorder()
  after.queue.start(r.handler, CONSUME)
  await until(async () => await jobCount(after.metrics, 'done') === 20)
  assert.deepEqual(r.seen.sort(), jobs.map((j) => j.key).sort())
  await h.admin.config('SET', 'appendfsync', 'everysec')
})

test('redis queue: Redis down → enqueue answers at once without throwing, the jobs wait in the outbox and are queued and run when it returns', async (t) => {
  const h = harness(t)
  const { queue, metrics } = await h.queue()
  const r = recorder()
  queue.start(r.handler, { concurrency: 1, batchSize: 4, batchWaitMs: 0 })
  await queue.enqueue([h.job('before')])
  await until(() => r.seen.length === 1)

  await server.kill()
  try {
    await until(() => h.admin.status !== 'ready')
    const during = [h.job('during'), h.job('during-2', 'text')]
    assert.equal(await queue.enqueue(during), 0)
    assert.deepEqual(await queue.isNegative([h.job('during').key]), [false])
    assert.equal(typeof await queue.depth(), 'number')
    assert.ok(await redisErrors(metrics) >= 1, 'the failed enqueue is counted')
    assert.equal(await jobCount(metrics, 'deferred'), 2)
    assert.equal(await jobCount(metrics, 'dropped') + await jobCount(metrics, 'unknown'), 0)
  } finally {
    await server.start()
  }
  // Nobody offers them again: the outbox does.
  await until(() => r.seen.includes(h.job('during').key) && r.seen.includes(h.job('during-2', 'text').key))
  assert.equal(await jobCount(metrics, 'queued'), 3)
  const late = h.job('after')
  await until(async () => (await queue.enqueue([late])) === 1)
  await until(() => r.seen.includes(late.key))
})

test('redis queue: a hot miss is sent once per resend interval per instance, not on every request', async (t) => {
  const h = harness(t)
  const { queue, metrics } = await h.queue({ resendIntervalMs: 60_000 })
  const j = h.job('hot')
  assert.equal(await queue.enqueue([j]), 1)
  const k = h.keysOf(j)
  const score = await h.admin.zscore(k.wait, j.key)
  for (let i = 0; i < 50; i++) await queue.enqueue([j])
  assert.equal(await h.admin.zscore(k.wait, j.key), score, 'no round trip for the repeats: demand unchanged')
  assert.equal(await jobCount(metrics, 'deduplicated'), 50)
})

test('redis queue: a consumer killed mid-batch (kill -9: renewals stop) loses its jobs to another after the lease; a lost lease is not an attempt', async (t) => {
  const h = harness(t)
  const leaseMs = 300
  const jobs = [h.job('c1'), h.job('c2', 'text')]
  const producer = await h.queue()
  assert.equal(await producer.queue.enqueue(jobs), 2)
  const child = spawn(process.execPath, ['--import', 'tsx', 'support/queue-consumer-process.ts', server.url, h.prefix, String(leaseMs)],
    { stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => { child.kill('SIGKILL') })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  await until(() => jobs.every((j) => out.includes(`taken ${j.key}`)), 30_000)
  child.kill('SIGKILL')
  await new Promise((resolve) => child.once('exit', resolve))
  const rescuer = await h.queue({ leaseMs })
  const records: Array<{ a: number; c: number }> = []
  const r = recorder()
  rescuer.queue.start(async (batch) => {
    for (const j of batch) records.push(JSON.parse(await h.admin.hget(h.keysOf(j).jobs, j.key) ?? '{}') as { a: number; c: number })
    return r.handler(batch)
  }, CONSUME)
  await until(async () => await jobCount(rescuer.metrics, 'done') === 2)
  assert.deepEqual(r.seen.sort(), jobs.map((j) => j.key).sort())
  assert.deepEqual(records.map(({ a, c }) => ({ a, c })), [{ a: 0, c: 1 }, { a: 0, c: 1 }], 'one lost lease each, no attempt')
  assert.equal(await jobCount(rescuer.metrics, 'retried'), 0)
})

test('redis queue: idle consumers sleep; a job this instance queues wakes them at once, one queued by another waits for the poller', async (t) => {
  const h = harness(t)
  // A poll interval far beyond the test's waits: only a wake-up can hand the job over in time.
  const { queue } = await h.queue({ pollMs: 600_000 })
  const other = await h.queue()
  const r = recorder()
  queue.start(r.handler, { concurrency: 3, batchSize: 4, batchWaitMs: 0 })
  await sleep(500) // every loop has found nothing and gone to sleep (the first round of takes is a few dozen scripts)
  const remote = h.job('from-another-instance')
  assert.equal(await other.queue.enqueue([remote]), 1)
  const local = h.job('from-this-instance', 'text')
  assert.equal(await queue.enqueue([local]), 1)
  await until(() => r.seen.includes(local.key))
  assert.ok(!r.seen.includes(remote.key), 'nobody polls for the other instance\'s job before the poller\'s wait ends')
})

test('redis queue: a job that vanished from Redis is sent again by the next miss after the resend window', async (t) => {
  const h = harness(t)
  const { queue, metrics } = await h.queue({ resendIntervalMs: 200 })
  const j = h.job('vanishes')
  assert.equal(await queue.enqueue([j]), 1)
  const k = h.keysOf(j)
  // Lost as an unreplicated write is lost in a failover: every trace of the job gone.
  await h.admin.multi().hdel(k.jobs, j.key).zrem(k.wait, j.key).zrem(k.born, j.key).exec()
  assert.equal(await queue.enqueue([j]), 0, 'inside the window: no round trip')
  assert.equal(await jobCount(metrics, 'deduplicated'), 1)
  await until(async () => (await queue.enqueue([j])) === 1)
  assert.equal(await h.admin.hexists(k.jobs, j.key), 1)
  assert.equal(await jobCount(metrics, 'queued'), 2)
})
