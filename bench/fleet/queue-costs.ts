// What the durable queue costs on a Redis Cluster (3 masters + 3 replicas), measured in one run:
// - idle polling: scripts per second an idle instance runs (INFO commandstats over every master);
// - pickup: time from enqueue to the handler call for an idle consumer, when this process queued
//   the job (its consumers are woken) and when another process did (found by the idle poller);
// - WAIT: time for enqueue() to resolve with QUEUE_WAIT_REPLICAS 0 and 1, open loop, blocks
//   interleaved (the request path does not await enqueue: this is what WAIT adds to the
//   background call, not to a response).
//
//   flock /work/locks/bench.lock npx tsx bench/fleet/queue-costs.ts [--idle-seconds 20] [--samples 10] [--rate 50] [--block-seconds 10]
import { mkdirSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Cluster } from 'ioredis'
import { createClusterClient } from '../../src/cache/redis-client.ts'
import { createMetrics } from '../../src/metrics.ts'
import { RedisQueue, type RedisQueueOptions } from '../../src/queue/redis-queue.ts'
import type { EmbedJob } from '../../src/queue/types.ts'
import { cacheJob } from '../../support/queue-harness.ts'
import { startRedisCluster } from '../../support/redis-cluster.ts'
import { num, parseArgs } from '../lib/args.ts'

const args = parseArgs(process.argv.slice(2))
const IDLE_S = num(args, 'idle-seconds', 20)
const SAMPLES = num(args, 'samples', 10)
const RATE = num(args, 'rate', 50)
const BLOCK_S = num(args, 'block-seconds', 10)
const RESULTS = resolve(import.meta.dirname, '../results')
const log = (m: string): void => { process.stderr.write(`[queue-costs ${new Date().toISOString().slice(11, 19)}] ${m}\n`) }
const loadAtStart = loadavg()
const CONSUME = { concurrency: 16, batchSize: 16, batchWaitMs: 5 } // EMBED_CONCURRENCY, EMBED_BATCH_SIZE defaults

const cluster = await startRedisCluster()
const clients: Cluster[] = []
function queue(prefix: string, overrides: Partial<RedisQueueOptions> = {}): RedisQueue {
  const redis = createClusterClient(cluster.seeds)
  redis.on('error', () => undefined)
  clients.push(redis)
  const quiet = { info: () => undefined, warn: () => undefined }
  return new RedisQueue({
    redis, prefix, metrics: createMetrics({ defaultMetrics: false }), log: quiet, versions: { image: 'v1', text: 'v1' },
    maxAttempts: 5, backoff: { baseMs: 500, maxMs: 60_000 }, negativeTtlMs: 60_000, ...overrides,
  })
}

async function scriptCalls(): Promise<number> {
  let n = 0
  for (const m of await cluster.masters()) {
    const c = clients[0]?.nodes('master').find((x) => x.options.port === m.port)
    const info = c ? String(await c.info('commandstats')) : ''
    for (const cmd of ['evalsha', 'eval']) n += Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(info)?.[1] ?? 0)
  }
  return n
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.floor(p * s.length))] as number
}

// ---- idle polling and pickup ---------------------------------------------------------------------
const consumer = queue('qcost', { waitReplicas: 1 })
const producer = queue('qcost', { waitReplicas: 1 })
await Promise.all([consumer.whenReady(10_000), producer.whenReady(10_000)])
const seenAt = new Map<string, number>()
consumer.start(async (batch) => {
  for (const j of batch) seenAt.set(j.key, performance.now())
  return batch.map(() => ({ ok: true }))
}, CONSUME)
await sleep(5_000) // the poller reaches its longest wait
const before = await scriptCalls()
const t0 = performance.now()
await sleep(IDLE_S * 1000)
const idlePerS = (await scriptCalls() - before) / ((performance.now() - t0) / 1000)
log(`idle: ${idlePerS.toFixed(1)} scripts/s (one instance, 2 modalities × ${CONSUME.concurrency} loops, 8 partitions)`)

async function pickup(from: RedisQueue, name: string): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < SAMPLES; i++) {
    await sleep(2_500 + Math.random() * 1_000) // idle long enough for the poller's longest wait
    const job = cacheJob('qcost', `${name}-${i}`, i % 2 === 0 ? 'text' : 'image')
    const sent = performance.now()
    await from.enqueue([job])
    while (!seenAt.has(job.key)) await sleep(2)
    out.push((seenAt.get(job.key) as number) - sent)
  }
  return out
}
const local = await pickup(consumer, 'local')
const remote = await pickup(producer, 'remote')
log(`pickup local p50 ${pct(local, 0.5).toFixed(1)} ms max ${Math.max(...local).toFixed(1)}; remote p50 ${pct(remote, 0.5).toFixed(1)} ms max ${Math.max(...remote).toFixed(1)} ms`)
await Promise.all([consumer.close({ drain: false, timeoutMs: 1000 }), producer.close({ drain: false, timeoutMs: 1000 })])

// ---- WAIT cost on enqueue ------------------------------------------------------------------------
const byWait: Record<string, number[]> = { '0': [], '1': [] }
const queues = { '0': queue('qwait', { waitReplicas: 0 }), '1': queue('qwait', { waitReplicas: 1 }) }
await Promise.all(Object.values(queues).map((q) => q.whenReady(10_000)))
let seq = 0
for (const w of ['0', '1', '0', '1'] as const) {
  const q = queues[w]
  const pending: Promise<void>[] = []
  const start = performance.now()
  for (let i = 0; i < RATE * BLOCK_S; i++) {
    const due = start + (i * 1000) / RATE
    const wait = due - performance.now()
    if (wait > 0) await sleep(wait)
    const jobs: EmbedJob[] = [cacheJob('qwait', `n${seq++}`, 'text'), cacheJob('qwait', `n${seq++}`, 'image')]
    pending.push(q.enqueue(jobs).then(() => { (byWait[w] as number[]).push(performance.now() - due) }))
  }
  await Promise.all(pending)
  log(`WAIT ${w}: block done, p50 ${pct(byWait[w] as number[], 0.5).toFixed(2)} ms`)
}
await Promise.all(Object.values(queues).map((q) => q.close({ drain: false, timeoutMs: 1000 })))
for (const c of clients) c.disconnect()
await cluster.stop()

const summary = (xs: number[]): { n: number; p50: number; p99: number; max: number } =>
  ({ n: xs.length, p50: pct(xs, 0.5), p99: pct(xs, 0.99), max: Math.max(...xs) })
const out = {
  generatedAt: new Date().toISOString(), loadAverage: { atStart: loadAtStart, atEnd: loadavg() },
  idle: { scriptsPerSecond: idlePerS, seconds: IDLE_S, loopsPerModality: CONSUME.concurrency, partitions: 8, pollMs: 250 },
  pickupMs: { local: summary(local), remote: summary(remote) },
  enqueueMs: { wait0: summary(byWait['0'] as number[]), wait1: summary(byWait['1'] as number[]), rate: RATE, jobsPerCall: 2, blockSeconds: BLOCK_S },
}
mkdirSync(RESULTS, { recursive: true })
writeFileSync(join(RESULTS, 'queue-costs.json'), JSON.stringify(out, null, 2))
const f = (x: number): string => x.toFixed(1)
const md = [
  '# Durable queue costs on a Redis Cluster', '',
  `Generated ${out.generatedAt}, \`flock /work/locks/bench.lock npx tsx bench/fleet/queue-costs.ts\`. Redis Cluster of 3 masters + 3 replicas on loopback; queues with the server's defaults (8 partitions, poll 250 ms, 4 loops per modality). Load average at start ${loadAtStart.map((x) => x.toFixed(1)).join(' / ')}, at end ${out.loadAverage.atEnd.map((x) => x.toFixed(1)).join(' / ')}.`, '',
  `- Idle polling: **${f(idlePerS)} scripts/s** for one idle instance (over ${IDLE_S} s, INFO commandstats of every master; the previous design: 2 × 4 loops × 8 partitions per second = 64/s).`,
  `- Pickup by an idle consumer (${SAMPLES} jobs each, 2.5–3.5 s apart): queued by the same process p50 ${f(out.pickupMs.local.p50)} ms, max ${f(out.pickupMs.local.max)} ms; by another process p50 ${f(out.pickupMs.remote.p50)} ms, max ${f(out.pickupMs.remote.max)} ms.`,
  `- enqueue() of 2 new jobs, open loop ${RATE}/s, blocks of ${BLOCK_S} s interleaved: WAIT 0 p50 ${out.enqueueMs.wait0.p50.toFixed(2)} / p99 ${out.enqueueMs.wait0.p99.toFixed(2)} / max ${f(out.enqueueMs.wait0.max)} ms; WAIT 1 p50 ${out.enqueueMs.wait1.p50.toFixed(2)} / p99 ${out.enqueueMs.wait1.p99.toFixed(2)} / max ${f(out.enqueueMs.wait1.max)} ms (the request path does not await it).`, '',
]
writeFileSync(join(RESULTS, 'queue-costs.md'), md.join('\n'))
process.stdout.write(md.join('\n'))
process.exit(0)
