// Hit-path figure (issue 9 §7): the same L2-hit-heavy open-loop load on one instance on a single
// Redis node and on two instances (--cluster-instances) on a Redis Cluster (3 masters + 3 replicas), blocks interleaved
// (single, cluster, single, cluster) in one run on one machine. Target: cluster p99 ≤ 1.5 × single.
//
//   flock /work/locks/bench.lock npx tsx bench/fleet/hit-path.ts [--rate 40] [--block-seconds 15] [--pairs 3] [--items 50] [--cluster-instances 2]
//
// Percentiles are over each setup's pooled latencies; the ratio is also given per pair of adjacent
// blocks and as the median of those (one block disturbed by another process on a shared machine
// moves the pooled p99 of its setup, not the median pair).
//
// L2-hit-heavy: every title of the workload is in Redis (seeded), none in L1 at the start, and L1
// is at its minimum (1 MiB, ~1,500 text vectors) over 20,000 titles, so most lookups go to L2.
import { mkdirSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { Redis } from 'ioredis'
import { loadBundle } from '../../src/bundle/load-bundle.ts'
import { embeddingKey } from '../../src/cache/keys.ts'
import { vectorToBuffer } from '../../src/cache/vector-codec.ts'
import { BUNDLE_DIR } from '../../support/bundle.ts'
import { startRedisCluster } from '../../support/redis-cluster.ts'
import { startRedis } from '../../support/redis.ts'
import { rng } from '../../support/random.ts'
import { startServerProcess, type ServerProcess } from '../../support/server-process.ts'
import { num, parseArgs } from '../lib/args.ts'
import { type Body, newStats, runLoad, summarizePhase, type PhaseSummary } from '../chaos/load.ts'
import { summarize } from '../lib/percentiles.ts'

const args = parseArgs(process.argv.slice(2))
const RATE = num(args, 'rate', 40)
const BLOCK_S = num(args, 'block-seconds', 15)
const PAIRS = num(args, 'pairs', 3)
const ITEMS = num(args, 'items', 50)
const CLUSTER_INSTANCES = num(args, 'cluster-instances', 2)
const TITLES = 20_000
const PREFIX = 'hp'
const RESULTS = resolve(import.meta.dirname, '../results')
const log = (m: string): void => { process.stderr.write(`[hit-path ${new Date().toISOString().slice(11, 19)}] ${m}\n`) }
const loadAtStart = loadavg()

const bundle = await loadBundle(BUNDLE_DIR)
const dim = bundle.manifest.oov.text.dim
const textVersion = bundle.manifest.encoders.text.version
const titles = Array.from({ length: TITLES }, (_, i) => `hit path title ${i}`)
const rand = rng(7)
const vectors = titles.map(() => vectorToBuffer(Float32Array.from({ length: dim }, () => rand() - 0.5)))

const single = await startRedis()
const cluster = await startRedisCluster()
log('seeding both tiers')
{
  const r = new Redis(single.url)
  const p = r.pipeline()
  titles.forEach((t, i) => p.set(embeddingKey(PREFIX, 'text', textVersion, t), vectors[i] as Buffer, 'EX', 3600))
  await p.exec()
  r.disconnect()
  const c = cluster.client()
  await new Promise<void>((res) => c.once('ready', () => res()))
  await Promise.all(titles.map((t, i) => c.set(embeddingKey(PREFIX, 'text', textVersion, t), vectors[i] as Buffer, 'EX', 3600)))
  c.disconnect()
}
const common = { REDIS_PREFIX: PREFIX, LOG_LEVEL: 'warn', L1_MAX_BYTES: String(1024 * 1024), BUDGET_MS: '200' }
log('starting instances')
const onSingle = await startServerProcess({ ...common, REDIS_URL: single.url })
const onCluster: ServerProcess[] = []
for (let i = 0; i < CLUSTER_INSTANCES; i++) onCluster.push(await startServerProcess({ ...common, REDIS_CLUSTER_NODES: cluster.seeds }))

let seq = 0
const pick = rng(11)
function body(): Body {
  seq++
  return { items: Array.from({ length: ITEMS }, (_, k) => ({ id: `i${k}`, title: titles[Math.floor(pick() * TITLES)] })) }
}

interface Block extends PhaseSummary { readonly setup: 'single' | 'cluster' }
const blocks: Block[] = []
const pooled: Record<'single' | 'cluster', number[]> = { single: [], cluster: [] }
async function block(setup: 'single' | 'cluster'): Promise<void> {
  let rr = 0
  const url = setup === 'single' ? () => onSingle.url : () => (onCluster[rr++ % onCluster.length] as ServerProcess).url
  const stats = newStats(setup, BLOCK_S)
  await runLoad(stats, { url, rate: RATE, seconds: BLOCK_S, body })
  pooled[setup].push(...stats.latencies)
  const s = summarizePhase(stats)
  blocks.push({ ...s, setup })
  log(`${setup}: sent ${s.sent}, 5xx ${s.fiveXx}, p50 ${s.latency.p50} ms, p99 ${s.latency.p99} ms, max ${s.latency.max} ms, sources ${JSON.stringify(s.sources)}`)
}

// Warm-up of both (JIT, connections); not measured.
await runLoad(newStats('warmup', 5), { url: () => onSingle.url, rate: RATE, seconds: 5, body })
await runLoad(newStats('warmup', 5), { url: () => (onCluster[seq % onCluster.length] as ServerProcess).url, rate: RATE, seconds: 5, body })
for (let i = 0; i < PAIRS; i++) for (const setup of ['single', 'cluster'] as const) await block(setup)

for (const p of [onSingle, ...onCluster]) p.kill('SIGTERM')
await Promise.all([onSingle, ...onCluster].map((p) => p.exited()))
await single.stop()
await cluster.stop()

function merged(setup: 'single' | 'cluster'): { p50: number; p99: number; max: number; sent: number; fiveXx: number; l2Share: number } {
  const bs = blocks.filter((b) => b.setup === setup)
  const src = (k: string): number => bs.reduce((a, b) => a + (b.sources[k] ?? 0), 0)
  const all = src('l1') + src('l2') + src('oov') + src('absent') + src('computed')
  return {
    p50: summarize(pooled[setup]).p50,
    p99: summarize(pooled[setup]).p99,
    max: Math.max(...bs.map((b) => b.latency.max)),
    sent: bs.reduce((a, b) => a + b.sent, 0),
    fiveXx: bs.reduce((a, b) => a + b.fiveXx, 0),
    l2Share: all > 0 ? src('l2') / (src('l1') + src('l2') + src('oov')) : 0,
  }
}
const s = merged('single')
const c = merged('cluster')
const ratio = c.p99 / s.p99
const pairRatios = Array.from({ length: PAIRS }, (_, i) => (blocks[2 * i + 1] as Block).latency.p99 / (blocks[2 * i] as Block).latency.p99)
const medianPair = [...pairRatios].sort((a, b) => a - b)[Math.floor(PAIRS / 2)] as number
const out = { generatedAt: new Date().toISOString(), rate: RATE, blockSeconds: BLOCK_S, items: ITEMS, loadAverage: { atStart: loadAtStart, atEnd: loadavg() }, blocks, single: s, cluster: c, p99Ratio: ratio, pairRatios, medianPairRatio: medianPair, target: 1.5 }
mkdirSync(RESULTS, { recursive: true })
writeFileSync(join(RESULTS, 'fleet-hit-path.json'), JSON.stringify(out, null, 2))
const md = [
  `# Hit path: one instance on one Redis vs ${CLUSTER_INSTANCES} on a Redis Cluster`, '',
  `Generated ${out.generatedAt}, \`flock /work/locks/bench.lock npx tsx bench/fleet/hit-path.ts\`. Open loop, ${RATE} req/s in total (cluster: round robin over its ${CLUSTER_INSTANCES} instances), ${ITEMS} titles per request drawn from ${TITLES} seeded in both tiers, L1 at 1 MiB, budget 200 ms; ${PAIRS} pairs of ${BLOCK_S} s blocks interleaved (single, cluster, …); percentiles over each setup's pooled latencies. Load average at start ${loadAtStart.map((x) => x.toFixed(1)).join(' / ')}, at end ${out.loadAverage.atEnd.map((x) => x.toFixed(1)).join(' / ')}.`, '',
  '| setup | requests | 5xx | p50 (ms) | p99 (ms) | max (ms) | L2 share of lookups |', '|---|---:|---:|---:|---:|---:|---:|',
  `| one instance, single Redis | ${s.sent} | ${s.fiveXx} | ${s.p50.toFixed(1)} | ${s.p99.toFixed(1)} | ${s.max.toFixed(1)} | ${(100 * s.l2Share).toFixed(0)}% |`,
  `| ${CLUSTER_INSTANCES} instances, Redis Cluster | ${c.sent} | ${c.fiveXx} | ${c.p50.toFixed(1)} | ${c.p99.toFixed(1)} | ${c.max.toFixed(1)} | ${(100 * c.l2Share).toFixed(0)}% |`, '',
  '| block | setup | p50 (ms) | p99 (ms) | max (ms) | L2 / L1 / OOV lookups |', '|---:|---|---:|---:|---:|---|',
  ...blocks.map((b, i) => `| ${i + 1} | ${b.setup} | ${b.latency.p50.toFixed(1)} | ${b.latency.p99.toFixed(1)} | ${b.latency.max.toFixed(1)} | ${b.sources.l2 ?? 0} / ${b.sources.l1 ?? 0} / ${b.sources.oov ?? 0} |`), '',
  `p99 ratio cluster / single over the pooled latencies: **${ratio.toFixed(2)}**; per pair of adjacent blocks ${pairRatios.map((r) => r.toFixed(2)).join(', ')}, median **${medianPair.toFixed(2)}** (target ≤ 1.5: ${ratio <= 1.5 ? 'met' : 'missed'} pooled, ${medianPair <= 1.5 ? 'met' : 'missed'} median pair).`, '',
]
writeFileSync(join(RESULTS, 'fleet-hit-path.md'), md.join('\n'))
process.stdout.write(md.join('\n'))
process.exit(0)
