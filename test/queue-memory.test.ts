import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { createMetrics, type Metrics } from '../src/metrics.ts'
import { CtrError } from '../src/errors.ts'
import { backoffDelayMs } from '../src/queue/backoff.ts'
import { MemoryQueue, type MemoryQueueOptions } from '../src/queue/memory-queue.ts'
import { NegativeCache } from '../src/queue/negative-cache.ts'
import { outcomeOf } from '../src/queue/run-batch.ts'
import type { EmbedJob, JobOutcome, Modality } from '../src/queue/types.ts'

const OK: JobOutcome = { ok: true }

function job(key: string, modality: Modality = 'image'): EmbedJob {
  return { key, modality, input: `https://origin.test/${key}.jpg` }
}

function makeQueue(overrides: Partial<MemoryQueueOptions> = {}): { queue: MemoryQueue; metrics: Metrics } {
  const metrics = createMetrics({ defaultMetrics: false })
  const queue = new MemoryQueue({
    capacity: 100, maxAttempts: 3, backoff: { baseMs: 20, maxMs: 1_000 }, negativeTtlMs: 60_000,
    negativeMaxKeys: 1_000, metrics, random: () => 0, ...overrides,
  })
  return { queue, metrics }
}

async function jobCount(metrics: Metrics, outcome: string, modality?: Modality): Promise<number> {
  const { values } = await metrics.jobs.get()
  return values.filter((v) => v.labels.outcome === outcome && (modality === undefined || v.labels.modality === modality))
    .reduce((sum, v) => sum + v.value, 0)
}

async function until(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time')
    await sleep(5)
  }
}

test('memory queue: deduplicates by key within a call, while queued and while in flight', async () => {
  const { queue, metrics } = makeQueue()
  assert.equal(await queue.enqueue([job('a'), job('a'), job('b')]), 2)
  assert.equal(await queue.enqueue([job('a')]), 0, 'queued key is deduplicated')
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  const seen: string[] = []
  queue.start(async (batch) => { seen.push(...batch.map((j) => j.key)); await gate; return batch.map(() => OK) },
    { concurrency: 1, batchSize: 10, batchWaitMs: 0 })
  await until(() => seen.length === 2)
  assert.equal(await queue.enqueue([job('a')]), 0, 'in-flight key is deduplicated')
  assert.equal(await queue.depth(), 0)
  release()
  await queue.close({ drain: true, timeoutMs: 1_000 })
  assert.deepEqual(seen.sort(), ['a', 'b'])
  assert.equal(await jobCount(metrics, 'queued'), 2)
  assert.equal(await jobCount(metrics, 'deduplicated'), 3, 'same call, while queued, while in flight')
  assert.equal(await jobCount(metrics, 'done'), 2)
})

test('memory queue: a finished key can be enqueued again', async () => {
  const { queue } = makeQueue()
  const seen: string[] = []
  queue.start(async (batch) => { seen.push(...batch.map((j) => j.key)); return batch.map(() => OK) },
    { concurrency: 1, batchSize: 4, batchWaitMs: 0 })
  assert.equal(await queue.enqueue([job('a')]), 1)
  await until(() => seen.length === 1)
  await sleep(5)
  assert.equal(await queue.enqueue([job('a')]), 1)
  await until(() => seen.length === 2)
  await queue.close({ drain: true, timeoutMs: 1_000 })
})

test('memory queue: bounded; jobs over capacity are dropped and counted', async () => {
  const { queue, metrics } = makeQueue({ capacity: 3 })
  assert.equal(await queue.enqueue([job('a'), job('b'), job('c', 'text'), job('d'), job('e', 'text')]), 3)
  assert.equal(await queue.depth(), 3)
  assert.equal(await jobCount(metrics, 'dropped'), 2)
  assert.equal(await jobCount(metrics, 'dropped', 'text'), 1)
  const gauge = await metrics.queueDepth.get()
  assert.deepEqual(gauge.values.map((v) => [v.labels.queue, v.value]), [['memory', 3]])
  await queue.close({ drain: false, timeoutMs: 100 })
  assert.equal(await queue.depth(), 0)
  assert.equal(await jobCount(metrics, 'dropped'), 5, 'queued jobs dropped at close(drain: false) are counted')
})

test('memory queue: full, a job asked for later takes the place of the least requested one (counted evicted)', async () => {
  let clock = 1_000_000
  const { queue, metrics } = makeQueue({ capacity: 4, now: () => clock, halfLifeMs: 60_000 })
  await queue.enqueue([job('old1'), job('old2'), job('t1', 'text')])
  clock += 10
  await queue.enqueue([job('old2')]) // asked for twice: outranks every one-off
  await queue.enqueue([job('old3')])
  assert.equal(await queue.depth(), 4)
  assert.equal(await queue.enqueue([job('same-ms')]), 1, 'a later one-off outranks the oldest one-off')
  assert.equal(await jobCount(metrics, 'evicted'), 1)
  assert.equal(await queue.enqueue([job('tie')]), 1, 'the other oldest one-off (t1, text) goes next: both modalities are candidates')
  assert.equal(await jobCount(metrics, 'evicted', 'text'), 1)
  assert.equal(await queue.enqueue([job('tie2')]), 0, 'no job ranks below one queued in the same millisecond: dropped')
  assert.equal(await jobCount(metrics, 'dropped'), 1)
  clock += 60_000
  for (let i = 0; i < 3; i++) assert.equal(await queue.enqueue([job(`hot${i}`)]), 1)
  assert.equal(await jobCount(metrics, 'evicted'), 5)
  assert.equal(await queue.depth(), 4)
  const order: string[] = []
  queue.start(async (batch) => { order.push(...batch.map((j) => j.key)); return batch.map(() => OK) },
    { concurrency: 1, batchSize: 10, batchWaitMs: 0 })
  await queue.close({ drain: true, timeoutMs: 1_000 })
  assert.deepEqual(order.sort(), ['hot0', 'hot1', 'hot2', 'old2'], 'the item asked for twice stayed; the one-offs left oldest first')
})

test('memory queue: micro-batches of one modality, at most batchSize (10 jobs, size 4 → 4, 4, 2)', async () => {
  const { queue } = makeQueue()
  const batches: Array<{ modality: Modality; size: number }> = []
  await queue.enqueue([...Array.from({ length: 10 }, (_, i) => job(`i${i}`)), job('t1', 'text'), job('t2', 'text')])
  queue.start(async (batch) => {
    assert.ok(batch.every((j) => j.modality === batch[0]?.modality), 'a batch holds one modality')
    batches.push({ modality: batch[0]?.modality ?? 'image', size: batch.length })
    await sleep(10)
    return batch.map(() => OK)
  }, { concurrency: 1, batchSize: 4, batchWaitMs: 30 })
  await queue.close({ drain: true, timeoutMs: 5_000 })
  assert.deepEqual(batches.filter((b) => b.modality === 'image').map((b) => b.size), [4, 4, 2])
  assert.deepEqual(batches.filter((b) => b.modality === 'text').map((b) => b.size), [2])
})

test('memory queue: a partial batch waits batchWaitMs for more jobs', async () => {
  const { queue } = makeQueue()
  const sizes: number[] = []
  queue.start(async (batch) => { sizes.push(batch.length); return batch.map(() => OK) },
    { concurrency: 2, batchSize: 8, batchWaitMs: 100 })
  await queue.enqueue([job('a')])
  await sleep(20)
  await queue.enqueue([job('b'), job('c')])
  await until(() => sizes.length > 0)
  assert.deepEqual(sizes, [3], 'the late jobs joined the waiting one')
  await queue.close({ drain: true, timeoutMs: 1_000 })
})

test('memory queue: concurrency bounds batches in flight per modality', async () => {
  const { queue } = makeQueue()
  let running = 0
  let peak = 0
  queue.start(async (batch) => {
    running++
    peak = Math.max(peak, running)
    await sleep(20)
    running--
    return batch.map(() => OK)
  }, { concurrency: 2, batchSize: 1, batchWaitMs: 0 })
  await queue.enqueue(Array.from({ length: 6 }, (_, i) => job(`k${i}`)))
  await queue.close({ drain: true, timeoutMs: 5_000 })
  assert.equal(peak, 2)
})

test('memory queue: a modality can have its own concurrency (titles 1, images 3)', async () => {
  const { queue } = makeQueue()
  const running: Record<Modality, number> = { image: 0, text: 0 }
  const peak: Record<Modality, number> = { image: 0, text: 0 }
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  queue.start(async (batch) => {
    const m = (batch[0] as EmbedJob).modality
    running[m]++
    peak[m] = Math.max(peak[m], running[m])
    await gate
    running[m]--
    return batch.map(() => OK)
  }, { concurrency: 3, modalityConcurrency: { text: 1 }, batchSize: 1, batchWaitMs: 0 })
  await queue.enqueue([...Array.from({ length: 6 }, (_, i) => job(`i${i}`)), ...Array.from({ length: 6 }, (_, i) => job(`t${i}`, 'text'))])
  await until(() => running.image === 3 && running.text === 1)
  await sleep(20) // nothing more starts while those run
  assert.deepEqual(running, { image: 3, text: 1 })
  release()
  await queue.close({ drain: true, timeoutMs: 5_000 })
  assert.deepEqual(peak, { image: 3, text: 1 })
  assert.throws(() => makeQueue().queue.start(async () => [], { concurrency: 2, modalityConcurrency: { text: 0 }, batchSize: 1, batchWaitMs: 0 }),
    /concurrency of text must be an integer ≥ 1, got 0/)
})

test('memory queue: transient failures retry with exponential backoff, then succeed', async () => {
  const { queue, metrics } = makeQueue({ backoff: { baseMs: 40, maxMs: 1_000 } })
  const calls: number[] = []
  queue.start(async (batch) => {
    calls.push(Date.now())
    if (calls.length === 1) throw new Error('worker crashed') // a whole-batch rejection is transient
    if (calls.length === 2) return batch.map(() => ({ ok: false, permanent: false, reason: 'timeout' }))
    return batch.map(() => OK)
  }, { concurrency: 1, batchSize: 4, batchWaitMs: 0 })
  await queue.enqueue([job('x')])
  await until(() => calls.length === 3)
  await sleep(5)
  // random() pinned to 0 → equal jitter gives half the exponential step: 20 ms, then 40 ms.
  const [c0 = 0, c1 = 0, c2 = 0] = calls
  assert.ok(c1 - c0 >= 19, `first retry after ${c1 - c0} ms`)
  assert.ok(c2 - c1 >= 39, `second retry after ${c2 - c1} ms`)
  assert.equal(await jobCount(metrics, 'retried'), 2)
  assert.equal(await jobCount(metrics, 'done'), 1)
  assert.equal(await jobCount(metrics, 'failed'), 0)
  assert.deepEqual(await queue.isNegative(['x']), [false])
  await queue.close({ drain: true, timeoutMs: 1_000 })
})

test('memory queue: retries run out after maxAttempts and the key is negatively cached', async () => {
  const { queue, metrics } = makeQueue({ maxAttempts: 3, backoff: { baseMs: 5, maxMs: 10 } })
  let calls = 0
  queue.start(async (batch) => { calls++; return batch.map(() => ({ ok: false, permanent: false, reason: 'flaky' })) },
    { concurrency: 1, batchSize: 4, batchWaitMs: 0 })
  await queue.enqueue([job('x')])
  await until(() => calls === 3)
  await sleep(30)
  assert.equal(calls, 3)
  assert.equal(await jobCount(metrics, 'retried'), 2)
  assert.equal(await jobCount(metrics, 'failed'), 1)
  assert.deepEqual(await queue.isNegative(['x', 'y']), [true, false])
  assert.equal(await queue.enqueue([job('x')]), 0)
  await queue.close({ drain: true, timeoutMs: 1_000 })
})

test('memory queue: a permanent failure is not retried, is negatively cached, and expires', async () => {
  const { queue, metrics } = makeQueue({ negativeTtlMs: 80 })
  let calls = 0
  queue.start(async (batch) => {
    calls++
    return batch.map((j) => j.key === 'missing' ? outcomeOf(new CtrError('FETCH_FAILED', ['404'], { permanent: true })) : OK)
  }, { concurrency: 1, batchSize: 4, batchWaitMs: 0 })
  await queue.enqueue([job('missing'), job('fine')])
  await until(() => calls === 1)
  await sleep(10)
  assert.deepEqual(await queue.isNegative(['missing', 'fine']), [true, false])
  assert.equal(await queue.enqueue([job('missing')]), 0, 're-enqueue of a negative key is skipped')
  assert.equal(await jobCount(metrics, 'negative'), 1)
  assert.equal(await jobCount(metrics, 'failed'), 1)
  assert.equal(await jobCount(metrics, 'retried'), 0)
  await sleep(100)
  assert.equal(await queue.enqueue([job('missing')]), 1, 'accepted again once the negative entry expired')
  await queue.close({ drain: true, timeoutMs: 1_000 })
  assert.equal(calls, 2)
})

test('memory queue: close(drain: true) finishes every queued job, then refuses new ones', async () => {
  const { queue, metrics } = makeQueue()
  const done: string[] = []
  await queue.enqueue(Array.from({ length: 7 }, (_, i) => job(`k${i}`, i % 2 === 0 ? 'image' : 'text')))
  queue.start(async (batch) => { await sleep(15); done.push(...batch.map((j) => j.key)); return batch.map(() => OK) },
    { concurrency: 1, batchSize: 2, batchWaitMs: 1_000 })
  await queue.close({ drain: true, timeoutMs: 5_000 })
  assert.equal(done.length, 7)
  assert.equal(await queue.depth(), 0)
  assert.equal(await queue.enqueue([job('late')]), 0)
  assert.equal(await jobCount(metrics, 'dropped'), 1)
})

test('memory queue: close(drain: false) lets in-flight batches finish and drops the rest', async () => {
  const { queue, metrics } = makeQueue()
  const done: string[] = []
  await queue.enqueue(Array.from({ length: 6 }, (_, i) => job(`k${i}`)))
  queue.start(async (batch) => { await sleep(40); done.push(...batch.map((j) => j.key)); return batch.map(() => OK) },
    { concurrency: 1, batchSize: 2, batchWaitMs: 0 })
  await sleep(5)
  await queue.close({ drain: false, timeoutMs: 1_000 })
  assert.deepEqual(done, ['k0', 'k1'])
  assert.equal(await jobCount(metrics, 'dropped'), 4)
  assert.equal(await queue.depth(), 0)
})

test('memory queue: close times out on a handler that never answers', async () => {
  const { queue } = makeQueue()
  await queue.enqueue([job('stuck')])
  queue.start(() => new Promise<never>(() => undefined), { concurrency: 1, batchSize: 1, batchWaitMs: 0 })
  const started = Date.now()
  await queue.close({ drain: true, timeoutMs: 50 })
  assert.ok(Date.now() - started < 1_000)
})

test('negative cache: bounded, oldest forgotten first; entries expire', () => {
  let now = 0
  const cache = new NegativeCache(2, () => now)
  cache.add('a', 100)
  cache.add('b', 100)
  cache.add('c', 100)
  assert.deepEqual(['a', 'b', 'c'].map((k) => cache.has(k)), [false, true, true])
  now = 100
  assert.equal(cache.has('b'), false)
  assert.equal(cache.size, 1)
})

test('backoff: exponential with equal jitter, capped', () => {
  const opts = { baseMs: 100, maxMs: 1_000 }
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoffDelayMs(n, opts, () => 0)), [50, 100, 200, 400, 500, 500])
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoffDelayMs(n, opts, () => 1)), [100, 200, 400, 800, 1000, 1000])
})
