import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { createMetrics, type Metrics } from '../src/metrics.ts'
import { bumpDemand, decayedDemand } from '../src/queue/demand-score.ts'
import { MemoryQueue, type MemoryQueueOptions } from '../src/queue/memory-queue.ts'
import { PriorityHeap } from '../src/queue/priority-heap.ts'
import type { EmbedJob, JobOutcome } from '../src/queue/types.ts'
import { rng } from '../support/random.ts'

const OK: JobOutcome = { ok: true }

function job(key: string): EmbedJob {
  return { key, modality: 'image', input: `https://origin.test/${key}.jpg` }
}

function makeQueue(overrides: Partial<MemoryQueueOptions> = {}): { queue: MemoryQueue; metrics: Metrics } {
  const metrics = createMetrics({ defaultMetrics: false })
  const queue = new MemoryQueue({
    capacity: 200_000, maxAttempts: 3, backoff: { baseMs: 20, maxMs: 1_000 }, negativeTtlMs: 60_000,
    negativeMaxKeys: 1_000, metrics, random: () => 0, ...overrides,
  })
  return { queue, metrics }
}

async function jobCount(metrics: Metrics, outcome: string): Promise<number> {
  const { values } = await metrics.jobs.get()
  return values.filter((v) => v.labels.outcome === outcome).reduce((sum, v) => sum + v.value, 0)
}

async function until(cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time')
    await sleep(5)
  }
}

test('demand score: one stored number orders jobs by decayed request count at any later time', () => {
  const h = 60_000
  const t0 = 1_700_000_000_000
  let a: number | undefined
  for (let i = 0; i < 4; i++) a = bumpDemand(a, t0, h) // 4 requests at t0
  assert.ok(Math.abs(decayedDemand(a as number, t0, h) - 4) < 1e-6)
  assert.ok(Math.abs(decayedDemand(a as number, t0 + 2 * h, h) - 1) < 1e-9, '4 requests decay to 1 after two half-lives')
  const c = bumpDemand(undefined, t0 + 3 * h, h)
  assert.ok(c > (a as number), 'one fresh request beats four from three half-lives ago (4/8 < 1)')
  const d = bumpDemand(bumpDemand(undefined, t0, h), t0 + h, h) // 0.5 + 1 at t0 + h
  assert.ok(Math.abs(decayedDemand(d, t0 + h, h) - 1.5) < 1e-6)
  assert.ok(Number.isFinite(bumpDemand(bumpDemand(undefined, 0, h), 10 * 365 * 86_400_000, h)), 'finite after ten years')
})

test('priority heap: pops in priority order after raises and removals (seeded, 5000 items)', () => {
  const rnd = rng(7)
  const heap = new PriorityHeap<{ priority: number; heapIndex: number; id: number; seq: number }>()
  const items = Array.from({ length: 5000 }, (_, id) => ({ priority: rnd(), heapIndex: -1, id, seq: id }))
  for (const it of items) heap.push(it)
  for (let i = 0; i < 2000; i++) {
    const it = items[Math.floor(rnd() * items.length)] as (typeof items)[number]
    it.priority += rnd()
    heap.raised(it)
  }
  const removed = heap.removeWhere((it) => it.id % 10 === 0)
  assert.equal(removed.length, 500)
  assert.ok(removed.every((it) => it.heapIndex === -1))
  const out: number[] = []
  for (let it = heap.pop(); it; it = heap.pop()) out.push(it.priority)
  assert.equal(out.length, 4500)
  for (let i = 1; i < out.length; i++) assert.ok((out[i - 1] as number) >= (out[i] as number), `pop ${i} out of order`)
})

test('memory queue: 100 items asked for repeatedly are embedded before a 50k backlog of one-off items', async () => {
  const { queue, metrics } = makeQueue()
  const order: string[] = []
  let release!: () => void
  let gate = new Promise<void>((resolve) => { release = resolve })
  // The handler is held on the first batch until the hot set is queued, as workers busy with the backlog are.
  queue.start(async (batch) => { await gate; order.push(...batch.map((j) => j.key)); return batch.map(() => OK) },
    { concurrency: 2, batchSize: 16, batchWaitMs: 0 })
  const backlog = Array.from({ length: 50_000 }, (_, i) => job(`cold-${i}`))
  for (let i = 0; i < backlog.length; i += 1000) await queue.enqueue(backlog.slice(i, i + 1000))
  const hot = Array.from({ length: 100 }, (_, i) => job(`hot-${i}`))
  // Traffic asks for the hot set again and again (each request a miss while it is queued).
  for (let round = 0; round < 5; round++) await queue.enqueue(hot)
  assert.equal(await jobCount(metrics, 'deduplicated'), 400)
  gate = Promise.resolve()
  release()
  await until(() => hot.every((h) => order.includes(h.key)))
  const lastHot = Math.max(...hot.map((h) => order.indexOf(h.key)))
  // Only the two batches taken before the hot set existed (2 × 16 backlog jobs) may precede it.
  assert.ok(lastHot < 100 + 32, `last hot item at position ${lastHot}`)
  const coldBefore = order.slice(0, lastHot).filter((k) => k.startsWith('cold-')).length
  assert.ok(coldBefore <= 32, `${coldBefore} backlog jobs ran before the last hot one`)
  await queue.close({ drain: false, timeoutMs: 1_000 })
})

test('memory queue: a job asked for more often runs first; equal demand keeps arrival order within a batch window', async () => {
  const { queue } = makeQueue()
  await queue.enqueue([job('a'), job('b'), job('c')])
  await queue.enqueue([job('c'), job('b')])
  await queue.enqueue([job('c')])
  const order: string[] = []
  queue.start(async (batch) => { order.push(...batch.map((j) => j.key)); return batch.map(() => OK) },
    { concurrency: 1, batchSize: 1, batchWaitMs: 0 })
  await until(() => order.length === 3)
  assert.deepEqual(order, ['c', 'b', 'a'])
  await queue.close({ drain: true, timeoutMs: 1_000 })
})

test('memory queue: old demand decays; a fresh request outranks stale ones (pinned clock)', async () => {
  let now = 1_000_000
  const { queue } = makeQueue({ halfLifeMs: 1_000, now: () => now })
  await queue.enqueue([job('stale')])
  await queue.enqueue([job('stale')])
  await queue.enqueue([job('stale')]) // 3 requests at t
  now += 3_000 // three half-lives: 3/8 of a request left
  await queue.enqueue([job('fresh')])
  const order: string[] = []
  queue.start(async (batch) => { order.push(...batch.map((j) => j.key)); return batch.map(() => OK) },
    { concurrency: 1, batchSize: 1, batchWaitMs: 0 })
  await until(() => order.length === 2)
  assert.deepEqual(order, ['fresh', 'stale'])
  await queue.close({ drain: true, timeoutMs: 1_000 })
})

test('memory queue: jobs older than maxAgeMs are dropped unrun and counted expired; a re-request after that queues again', async () => {
  let now = 5_000_000
  const { queue, metrics } = makeQueue({ maxAgeMs: 10_000, now: () => now })
  await queue.enqueue([job('old-1'), job('old-2'), job('old-3')])
  now += 6_000
  await queue.enqueue([job('young')])
  await queue.enqueue([job('old-1')]) // more demand does not make a job younger
  now += 5_000 // old-* are 11 s old, young 5 s
  const ran: string[] = []
  queue.start(async (batch) => { ran.push(...batch.map((j) => j.key)); return batch.map(() => OK) },
    { concurrency: 1, batchSize: 8, batchWaitMs: 0 })
  await until(() => ran.length === 1)
  assert.deepEqual(ran, ['young'])
  assert.equal(await jobCount(metrics, 'expired'), 3)
  assert.equal(await queue.depth(), 0)
  assert.equal(await queue.enqueue([job('old-1')]), 1, 'an expired key is forgotten, not negatively cached')
  await until(() => ran.length === 2)
  await queue.close({ drain: true, timeoutMs: 1_000 })
})

test('memory queue: the sweep expires jobs the workers never reach', async () => {
  let now = 9_000_000
  const { queue, metrics } = makeQueue({ maxAgeMs: 400, now: () => now })
  await queue.enqueue([job('x'), job('y')])
  assert.equal(await queue.depth(), 2)
  now += 1_000
  let expired = 0
  for (let i = 0; i < 400 && expired < 2; i++) { await sleep(10); expired = await jobCount(metrics, 'expired') }
  assert.equal(expired, 2)
  assert.equal(await queue.depth(), 0)
  await queue.close({ drain: false, timeoutMs: 100 })
})
