// Chaos run (issue 6): a real ctrserve process, a private redis-server and an image origin, all on
// loopback, under a fixed-rate load while faults are injected one phase at a time. Prints and
// saves bench/results/chaos.json + chaos.md. With `--soak S`: S seconds of steady load sampling the
// server's RSS every 5 s, and the slope of a least-squares fit (bench/results/chaos-soak.*).
//
//   npx tsx bench/chaos/run.ts [--rate 40] [--phase-seconds 20]
//   npx tsx bench/chaos/run.ts --soak 600
//   --log-level (server LOG_LEVEL, default info: embedding failures are counted from its log lines)
//   --name (results file name, default chaos)
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { loadBundle } from '../../src/bundle/load-bundle.ts'
import { embeddingKey } from '../../src/cache/keys.ts'
import { vectorToBuffer } from '../../src/cache/vector-codec.ts'
import { partitionKeyPattern, partitionKeys, partitionOf } from '../../src/queue/partition-keys.ts'
import { BUNDLE_DIR, SAMPLE_DIR } from '../../support/bundle.ts'
import { freePort, startRedis } from '../../support/redis.ts'
import { sampleContexts, sampleItems } from '../../support/sample.ts'
import { startImageOrigin } from '../../support/image-origin.ts'
import { startServerProcess, type ServerProcess } from '../../support/server-process.ts'
import { num, parseArgs } from '../lib/args.ts'
import { timeUntil } from '../lib/wait.ts'
import { crashEncoderWorker } from './kill-worker.ts'
import { type Body, newStats, runLoad, summarizePhase, type PhaseStats, type PhaseSummary } from './load.ts'

const args = parseArgs(process.argv.slice(2))
const RATE = num(args, 'rate', 40)
const PHASE_S = num(args, 'phase-seconds', 20)
const SOAK_S = num(args, 'soak', 0)
const LOG_LEVEL = args.get('log-level') ?? 'info'
const NAME = args.get('name') ?? 'chaos'
/** Soak: a small L1 fills within a minute, so a later RSS slope is not the cache filling by design. */
const L1_MAX_BYTES = num(args, 'l1-max-bytes', SOAK_S > 0 ? 16 * 1024 * 1024 : 256 * 1024 * 1024)
const RESULTS = resolve(import.meta.dirname, '../results')
const PREFIX = 'chaos'
/** The server's QUEUE_PARTITIONS (its default): where a job's negative marker lives. */
const QUEUE_PARTITIONS = 8
const BUDGET_MS = 200
const log = (m: string): void => { process.stderr.write(`[chaos ${new Date().toISOString().slice(11, 19)}] ${m}\n`) }

const hardStop = setTimeout(() => { log('hard time limit reached, exiting'); process.exit(2) }, (SOAK_S > 0 ? SOAK_S + 240 : 330) * 1000)
hardStop.unref()

// ---- participants ---------------------------------------------------------------------------------
const bundle = await loadBundle(BUNDLE_DIR)
const versions = { image: bundle.manifest.encoders.image.version, text: bundle.manifest.encoders.text.version }
const redis = await startRedis()
const origin = await startImageOrigin(SAMPLE_DIR)
const inspectPort = await freePort()
const port = await freePort()
const env = {
  REDIS_URL: redis.url, REDIS_PREFIX: PREFIX, IMAGE_ALLOWED_HOSTS: '127.0.0.1', LOG_LEVEL, EMBED_WORKERS: '1', BUDGET_MS: String(BUDGET_MS), L1_MAX_BYTES: String(L1_MAX_BYTES),
}
const nodeArgs = [`--inspect=127.0.0.1:${inspectPort}`]
log('starting server')
let server: ServerProcess = await startServerProcess(env, port, nodeArgs)
const admin = new Redis(redis.url, { retryStrategy: () => 200, maxRetriesPerRequest: 1 })
admin.on('error', () => undefined) // Redis is killed on purpose

const items = sampleItems(origin.baseUrl)
const contexts = sampleContexts()
const HOT = 300
let freshImages = 0
let freshTitles = 0
/** 20 items: 18 from a hot set, one new title per request, one new image URL every 5th request. */
function body(i: number, extra: Array<Record<string, unknown>> = []): Body {
  const pick = (k: number): Record<string, unknown> => ({ ...items[(i * 7919 + k * 104_729) % HOT] })
  const list: Array<Record<string, unknown>> = Array.from({ length: 18 }, (_, k) => pick(k))
  list.push({ id: `ft${freshTitles}`, title: `chaos fresh title ${freshTitles++}` })
  if (i % 5 === 0) {
    const src = items[HOT + (freshImages % (items.length - HOT))] as { image_url?: string }
    list.push({ id: `fi${freshImages}`, image_url: `${src.image_url ?? ''}?n=${freshImages++}` })
  }
  return { context: contexts[i % contexts.length] as object, items: [...list, ...extra] }
}

async function scrape(): Promise<Record<string, number>> {
  try {
    const text = await (await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5_000) })).text()
    const out: Record<string, number> = {}
    for (const line of text.split('\n')) {
      const m = /^ctrserve_(embedding_jobs_total|redis_errors_total|image_fetch_failures_total)\{(.*)\} (\S+)$/.exec(line)
      if (m) out[`${m[1]}{${m[2]}}`] = Number(m[3])
    }
    return out
  } catch {
    return {}
  }
}

function rssMiB(pid: number | undefined): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) / 1024 : Number.NaN
  } catch {
    return Number.NaN
  }
}

async function readyStatus(): Promise<number> {
  try {
    return (await fetch(`${server.url}/readyz`, { signal: AbortSignal.timeout(2_000) })).status
  } catch {
    return 0
  }
}

interface PhaseResult extends PhaseSummary { readonly fault: string; readonly notes: Record<string, unknown>; readonly metricsDelta: Record<string, number> }
const results: PhaseResult[] = []

async function phase(name: string, fault: string, seconds: number, inject: (stats: PhaseStats) => Promise<Record<string, unknown>>,
  bodyFn: (i: number) => Body = body): Promise<PhaseResult> {
  log(`phase ${name}: ${fault}`)
  const before = await scrape()
  const logFrom = server.output.length
  const proc = server
  const stats = newStats(name, seconds)
  const started = performance.now()
  const load = runLoad(stats, {
    url: () => server.url, rate: RATE, seconds, body: bodyFn,
    onResponse: (r) => { if (stats.firstL2Ms === undefined && r.sources.includes('l2')) stats.firstL2Ms = Math.round(performance.now() - started) },
  })
  const notes = await inject(stats)
  await load
  const after = await scrape()
  const metricsDelta: Record<string, number> = {}
  // A counter lower than before means the server restarted in this phase: count from zero.
  for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) metricsDelta[k] = v >= (before[k] ?? 0) ? v - (before[k] ?? 0) : v
  const r: PhaseResult = { ...summarizePhase(stats), fault, notes: { ...notes, embeddingFailures: failureReasons([...proc.output.slice(logFrom), ...(server === proc ? [] : server.output)]) }, metricsDelta }
  results.push(r)
  log(`  sent ${r.sent}, 5xx ${r.fiveXx}, conn errors ${r.connectionErrors}, p99 ${r.latency.p99} ms, max ${r.latency.max} ms ${JSON.stringify(notes)}`)
  return r
}

/** 'embedding failed' log lines (info level) among `chunks` of server output, counted by reason. */
function failureReasons(chunks: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const line of chunks.join('').split('\n')) {
    if (!line.includes('embedding failed')) continue
    try {
      const reason = String((JSON.parse(line) as { reason?: string }).reason).replace(/http:\/\/127\.0\.0\.1:\d+\/[^)\s]*/g, '<url>')
      out[reason] = (out[reason] ?? 0) + 1
    } catch {
      // a partial line at a chunk boundary
    }
  }
  return out
}

async function finish(): Promise<{ code: number | null; signal: string | null }> {
  server.kill('SIGTERM')
  const exit = await Promise.race([server.exited(), sleep(30_000).then(() => ({ code: null, signal: 'timeout' as const }))])
  server.kill('SIGKILL')
  admin.disconnect()
  await origin.close()
  await redis.stop()
  return exit
}

// ---- warm-up ----------------------------------------------------------------------------------------
log(`warm-up at ${RATE} req/s`)
await runLoad(newStats('warmup', 15), { url: () => server.url, rate: RATE, seconds: 15, body })
await sleep(3_000)

if (SOAK_S > 0) {
  // ---- soak: steady load, RSS every 5 s ---------------------------------------------------------------
  const samples: Array<{ t: number; rssMiB: number }> = []
  const t0 = performance.now()
  const sampler = setInterval(() => samples.push({ t: (performance.now() - t0) / 1000, rssMiB: rssMiB(server.child.pid) }), 5_000)
  const r = await phase('soak', `steady load for ${SOAK_S} s`, SOAK_S, async () => ({}))
  clearInterval(sampler)
  const fit = linearFit(samples.map((s) => s.t / 60), samples.map((s) => s.rssMiB))
  // Second half only: start-up growth (JIT, caches filling) is not a leak.
  const half = samples.filter((s) => s.t >= SOAK_S / 2)
  const fit2 = linearFit(half.map((s) => s.t / 60), half.map((s) => s.rssMiB))
  const exit = await finish()
  const soak = { generatedAt: new Date().toISOString(), rate: RATE, seconds: SOAK_S, l1MaxBytes: L1_MAX_BYTES, samples, fitAll: fit, fitSecondHalf: fit2, load: r, exit }
  mkdirSync(RESULTS, { recursive: true })
  writeFileSync(join(RESULTS, `${NAME}-soak.json`), JSON.stringify(soak, null, 2))
  const md = [
    `# Soak: ${SOAK_S} s at ${RATE} req/s (20 items per request)`, '',
    `Generated ${soak.generatedAt}, \`npx tsx bench/chaos/run.ts --soak ${SOAK_S}\`. L1_MAX_BYTES ${L1_MAX_BYTES} (each request brings a new title and every 5th a new image, so an unbounded L1 would grow by design). RSS of the server process sampled every 5 s (${samples.length} samples), least-squares slope with a 95% interval (±1.96·SE; samples are autocorrelated, so the interval is optimistic).`, '',
    '| window | slope (MiB/min) | 95% interval | distinguishable from 0 | RSS first → last (MiB) |', '|---|---:|---|---|---|',
    fitRow('whole run', fit, samples), fitRow('second half', fit2, half), '',
    `Requests ${r.sent}, statuses ${JSON.stringify(r.statuses)}, 5xx ${r.fiveXx}, connection errors ${r.connectionErrors}, p99 ${r.latency.p99} ms, max ${r.latency.max} ms.`, '',
  ].join('\n')
  writeFileSync(join(RESULTS, `${NAME}-soak.md`), md)
  process.stdout.write(md)
  process.exit(0)
}

// ---- phases -----------------------------------------------------------------------------------------
// Probe titles for the recovery measurement: written to Redis now (persisted by the AOF), never
// requested before Redis returns, so the first `l2` source after the restart is a real L2 hit.
const probes = Array.from({ length: 5_000 }, (_, i) => `chaos probe title ${i}`)
{
  const vec = vectorToBuffer(new Float32Array(bundle.manifest.oov.text.dim).fill(0.01))
  const p = admin.pipeline()
  for (const t of probes) p.set(embeddingKey(PREFIX, 'text', versions.text, t), vec, 'EX', 3600)
  await p.exec()
  await sleep(1_500) // appendfsync everysec
}
let probeAt = 0
const withProbe = (i: number): Body => body(i, [{ id: `probe${probeAt}`, title: probes[probeAt++ % probes.length] }])

await phase('baseline', 'none', PHASE_S, async () => ({}))

await phase('redis-killed', 'redis-server SIGKILL at phase start', PHASE_S, async () => {
  await redis.kill()
  const notReadyAfterMs = await timeUntil(async () => (await readyStatus()) === 503, 10_000)
  return { readyz503AfterMs: notReadyAfterMs }
})

await phase('redis-back', 'redis-server restarted (AOF) at phase start; probe titles only in Redis', PHASE_S, async (stats) => {
  const t0 = performance.now()
  await redis.start()
  const acceptingMs = Math.round(performance.now() - t0)
  const readyMs = await timeUntil(async () => (await readyStatus()) === 200, 15_000)
  await timeUntil(async () => stats.firstL2Ms !== undefined, 15_000, 20)
  return { redisAcceptingAfterMs: acceptingMs, readyz200AfterMs: readyMs === undefined ? undefined : readyMs + acceptingMs, firstL2HitAfterRestartMs: stats.firstL2Ms }
}, withProbe)

await phase('origin-slow', 'origin answers after 5 s (fetch timeout 3 s)', PHASE_S / 2, async () => {
  origin.delayMs = 5_000
  return {}
})
await phase('origin-down', 'origin answers 503', PHASE_S / 2, async () => {
  origin.delayMs = 0
  origin.failWith = 503
  return {}
})
origin.failWith = 0

await phase('worker-killed', 'image encoder worker thread crashed (uncaught exception via the inspector)', PHASE_S, async () => {
  const before = server.output.join('').split('encoder worker died, replacing it').length - 1
  const workerId = await crashEncoderWorker(inspectPort, 'image')
  const replacedMs = await timeUntil(async () => server.output.join('').split('encoder worker died, replacing it').length - 1 > before, 10_000, 20)
  return { crashedWorkerId: workerId, replacementLoggedAfterMs: replacedMs }
})

// kill -9 with accepted jobs: a burst of new images while the origin is slow (so batches are in
// flight and more wait in the stream), then SIGKILL, restart, and count what reaches Redis.
const burstUrls = Array.from({ length: 100 }, (_, i) => `${(items[HOT + i] as { image_url?: string }).image_url ?? ''}?burst=${i}`)
await phase('server-kill-9', 'server SIGKILL with queued jobs, restarted on the same port', 45, async () => {
  origin.delayMs = 2_000
  const res = await fetch(`${server.url}/predict`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ items: burstUrls.map((image_url, i) => ({ id: `b${i}`, image_url })) }),
  })
  await sleep(1_000)
  let pendingBefore = 0 // jobs leased to a consumer (in flight) when the server dies
  for (const key of await admin.keys(partitionKeyPattern(PREFIX, 'active', 'image')).catch(() => [])) pendingBefore += await admin.zcard(key).catch(() => 0)
  server.kill('SIGKILL')
  await server.exited()
  const killedAt = performance.now()
  origin.delayMs = 0
  server = await startServerProcess(env, port, nodeArgs)
  const restartMs = Math.round(performance.now() - killedAt)
  const keys = burstUrls.map((u) => embeddingKey(PREFIX, 'image', versions.image, u))
  let present = 0
  const allMs = await timeUntil(async () => {
    present = (await admin.exists(...keys).catch(() => 0))
    return present === keys.length
  }, 120_000, 1_000)
  const negative = (await Promise.all(keys.map((k) => admin.exists(partitionKeys(PREFIX, 'image', versions.image, partitionOf(k, QUEUE_PARTITIONS)).negative(k)).catch(() => 0)))).reduce((a, b) => a + b, 0)
  return {
    burstStatus: res.status, jobsAccepted: keys.length, pendingAtKill: pendingBefore, restartToHealthyMs: restartMs,
    allEmbeddedAfterKillMs: allMs === undefined ? undefined : allMs + restartMs, embedded: present, negativeCached: negative, jobsLost: keys.length - present,
  }
})

const exit = await finish()
const out = { generatedAt: new Date().toISOString(), node: process.version, rate: RATE, itemsPerRequest: '19-21', budgetMs: BUDGET_MS, phases: results, finalExit: exit }
mkdirSync(RESULTS, { recursive: true })
writeFileSync(join(RESULTS, `${NAME}.json`), JSON.stringify(out, null, 2))
const md = [
  `# Chaos run`, '',
  `Generated ${out.generatedAt}, node ${process.version}, \`npx tsx bench/chaos/run.ts\`. Fixed-rate load of ${RATE} req/s (open loop, latency from each request's due time), 19–21 items per request (18 hot, one new title, every 5th request one new image), default budget ${BUDGET_MS} ms, 1 image encoder worker; real server process, redis-server and image origin on 127.0.0.1. Shared 2-core machine: absolute latencies are noisy.`, '',
  '| phase | fault | requests | 5xx | conn. errors | p50 (ms) | p99 (ms) | max (ms) | l1 / l2 / oov sources | notes |',
  '|---|---|---:|---:|---:|---:|---:|---:|---|---|',
  ...results.map((r) => `| ${r.phase} | ${r.fault} | ${r.sent} | ${r.fiveXx} | ${r.connectionErrors} | ${r.latency.p50} | ${r.latency.p99} | ${r.latency.max} | ${r.sources.l1 ?? 0} / ${r.sources.l2 ?? 0} / ${r.sources.oov ?? 0} | ${Object.entries(r.notes).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join('; ')} |`),
  '', `Server exit after the final SIGTERM: ${JSON.stringify(exit)}.`, '',
  'Metric changes per phase (jobs by outcome, Redis errors):', '',
  ...results.map((r) => `- ${r.phase}: ${Object.entries(r.metricsDelta).map(([k, v]) => `${k.replace('embedding_jobs_total', 'jobs').replace('redis_errors_total', 'redis_errors')} +${v}`).join(', ') || '—'}`),
  '',
].join('\n')
writeFileSync(join(RESULTS, `${NAME}.md`), md)
process.stdout.write(md)
process.exit(0)

// ---- helpers ------------------------------------------------------------------------------------------
interface Fit { slope: number; se: number; n: number }
function linearFit(x: number[], y: number[]): Fit {
  const n = x.length
  if (n < 3) return { slope: Number.NaN, se: Number.NaN, n }
  const mx = x.reduce((a, b) => a + b, 0) / n
  const my = y.reduce((a, b) => a + b, 0) / n
  let sxx = 0
  let sxy = 0
  for (let i = 0; i < n; i++) { sxx += ((x[i] as number) - mx) ** 2; sxy += ((x[i] as number) - mx) * ((y[i] as number) - my) }
  const slope = sxy / sxx
  let ss = 0
  for (let i = 0; i < n; i++) ss += ((y[i] as number) - my - slope * ((x[i] as number) - mx)) ** 2
  return { slope, se: Math.sqrt(ss / (n - 2) / sxx), n }
}
function fitRow(name: string, f: Fit, s: Array<{ rssMiB: number }>): string {
  const lo = f.slope - 1.96 * f.se
  const hi = f.slope + 1.96 * f.se
  return `| ${name} | ${f.slope.toFixed(2)} | ${lo.toFixed(2)} … ${hi.toFixed(2)} | ${lo > 0 || hi < 0 ? 'yes' : 'no'} | ${s[0]?.rssMiB.toFixed(0)} → ${s[s.length - 1]?.rssMiB.toFixed(0)} |`
}
