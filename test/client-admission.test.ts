// Per-client admission to the miss queue (issue 13): a client sending only unique URLs gets at most
// its burst, then its rate, while another client's misses are still queued; counted in /metrics.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { clientScope, withClientAdmission } from '../src/embedding/client-admission.ts'
import { createMetrics } from '../src/metrics.ts'
import type { EmbedJob } from '../src/queue/types.ts'
import { build } from '../support/app.ts'

const job = (i: number): EmbedJob => ({ key: `k${i}`, modality: 'image', input: `https://img.example/${i}.jpg` })

test('token bucket per client: burst, refill at the rate, other clients unaffected, no client unlimited', async () => {
  let t = 0
  const offered: number[] = []
  const inner = { enqueue: async (jobs: EmbedJob[]) => { offered.push(jobs.length); return jobs.length } }
  const metrics = createMetrics({ defaultMetrics: false })
  const q = withClientAdmission(inner, { ratePerS: 10, burst: 50, maxClients: 2, metrics, now: () => t })
  const jobs = Array.from({ length: 80 }, (_, i) => job(i))
  assert.equal(await clientScope.run('10.0.0.1', () => q.enqueue(jobs)), 50)
  assert.equal(await clientScope.run('10.0.0.1', () => q.enqueue(jobs)), 0)
  t += 1500 // 15 tokens back
  assert.equal(await clientScope.run('10.0.0.1', () => q.enqueue(jobs)), 15)
  assert.equal(await clientScope.run('10.0.0.2', () => q.enqueue(jobs.slice(0, 30))), 30, 'another client has its own bucket')
  assert.equal(await q.enqueue(jobs), 80, 'no client (command-line tools): not limited')
  assert.deepEqual(offered, [50, 15, 30, 80])
  const text = await metrics.registry.metrics()
  assert.match(text, /ctrserve_queue_admission_total\{result="admitted"\} 95/)
  assert.match(text, /ctrserve_queue_admission_total\{result="throttled"\} 175/) // 30 + 80 + 65
  // Bounded memory: a third client evicts the least recently used bucket, which starts full again.
  await clientScope.run('10.0.0.3', () => q.enqueue(jobs.slice(0, 1)))
  assert.equal(await clientScope.run('10.0.0.1', () => q.enqueue(jobs)), 50)
})

test('one bucket for every client together: many clients cannot offer more than the instance bound; its refusals cost a client nothing', async () => {
  let t = 0
  const offered: number[] = []
  const inner = { enqueue: async (jobs: EmbedJob[]) => { offered.push(jobs.length); return jobs.length } }
  const metrics = createMetrics({ defaultMetrics: false })
  const q = withClientAdmission(inner, { ratePerS: 100, burst: 40, maxClients: 100, metrics, instance: { ratePerS: 10, burst: 50 }, now: () => t })
  const jobs = Array.from({ length: 40 }, (_, i) => job(i))
  const from = (client: string, n = 40): Promise<number> => clientScope.run(client, () => q.enqueue(jobs.slice(0, n)))
  assert.equal(await from('10.0.0.1'), 40)
  assert.equal(await from('10.0.0.2'), 10, 'the instance has 10 tokens left')
  assert.equal(await from('10.0.0.3'), 0)
  t += 2000 // 20 tokens back for the instance
  assert.equal(await from('10.0.0.3'), 20, 'client 3 was refused by the instance only: its own 40 are still there')
  assert.deepEqual(offered, [40, 10, 20])
  const text = await metrics.registry.metrics()
  assert.match(text, /ctrserve_queue_admission_total\{result="admitted"\} 70/)
  assert.match(text, /ctrserve_queue_admission_total\{result="throttled_instance"\} 90/) // 30 + 40 + 20
  assert.doesNotMatch(text, /result="throttled"\}/, 'no client reached its own bound')
  // The instance bound alone (no per-client bound) holds too.
  const alone = withClientAdmission(inner, { ratePerS: 0, burst: 1, maxClients: 1, metrics, instance: { ratePerS: 1, burst: 5 }, now: () => 0 })
  assert.equal(await clientScope.run('a', () => alone.enqueue(jobs)), 5)
  assert.equal(await clientScope.run('b', () => alone.enqueue(jobs)), 0)
})

test('repeats of keys the queue already holds are passed on without a token: a hot miss asked for again does not spend the client\'s budget', async () => {
  const held = new Set<string>()
  const offered: string[][] = []
  const inner = {
    enqueue: async (jobs: EmbedJob[]) => { offered.push(jobs.map((j) => j.key)); let n = 0; for (const j of jobs) if (!held.has(j.key)) { held.add(j.key); n++ } return n },
    isRepeat: (key: string) => held.has(key),
  }
  const metrics = createMetrics({ defaultMetrics: false })
  const q = withClientAdmission(inner, { ratePerS: 0.001, burst: 3, maxClients: 10, metrics, now: () => 0 })
  const inClient = (jobs: EmbedJob[]): Promise<number> => clientScope.run('10.0.0.9', () => q.enqueue(jobs))
  assert.equal(await inClient([job(1), job(2)]), 2)
  // The same two keys, asked for again and again: passed on (their priority rises), never charged.
  for (let i = 0; i < 20; i++) assert.equal(await inClient([job(1), job(2)]), 0)
  // One token is left for a new key; the key after it is throttled.
  assert.equal(await inClient([job(1), job(3), job(4)]), 1)
  assert.deepEqual(offered.at(-1), ['k1', 'k3'])
  assert.equal(offered.length, 22)
  const text = await metrics.registry.metrics()
  assert.match(text, /ctrserve_queue_admission_total\{result="admitted"\} 3/)
  assert.match(text, /ctrserve_queue_admission_total\{result="throttled"\} 1/)
})

test('through /predict: one client past its burst is throttled and counted; requests still answer 200', async (t) => {
  const app = await build(t, { QUEUE_CLIENT_RATE: 1, QUEUE_CLIENT_BURST: 5 })
  const items = Array.from({ length: 8 }, (_, i) => ({ id: `u${i}`, title: `unique title number ${i} for admission` }))
  const res = await app.inject({ method: 'POST', url: '/predict', payload: { items }, remoteAddress: '203.0.113.7' })
  assert.equal(res.statusCode, 200)
  const other = await app.inject({ method: 'POST', url: '/predict', payload: { items: [{ id: 'o', title: 'another client title' }] }, remoteAddress: '203.0.113.8' })
  assert.equal(other.statusCode, 200)
  const m = (await app.inject({ url: '/metrics' })).body
  assert.match(m, /ctrserve_queue_admission_total\{result="admitted"\} 6/)
  assert.match(m, /ctrserve_queue_admission_total\{result="throttled"\} 3/)
  assert.match(m, /ctrserve_embedding_jobs_total\{modality="text",outcome="queued"\} 6/)
})
