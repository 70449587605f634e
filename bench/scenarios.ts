import { existsSync, mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { measureCeilingInChild, sweep } from './lib/phases.ts'
import { type RunContext, type ScenarioResult, infra, makeWorkload, newResult, seconds } from './lib/context.ts'
import { type Measurement, measure } from './lib/measure.ts'
import { memory } from './lib/proc-stats.ts'
import { type PredictBody, itemVariant } from './lib/sample.ts'
import { readLines } from '../support/jsonl.ts'
import { startPeer, startServer } from './lib/services.ts'
import { copyVariantsInRedis, predict, resetQueue, warmUntilL1 } from './lib/warm.ts'
import { latestProfile, summarizeProfile } from './profile-summary.ts'
import { measureRecovery, queueDepth } from './lib/recovery.ts'
import { rawImageEncoderRate } from './lib/raw-encoder.ts'
import { SAMPLE_DIR } from '../support/bundle.ts'

// The eight scenarios of issue 5. Every server scenario starts its own ctrserve process (clean
// metrics, CPU and RSS of that configuration only); caches are warmed through the server itself
// (sample items with the `oov` policy until every source is `l1`), which also fills Redis under
// `warmPrefix` for the scenarios that start from a warm Redis.

const ITEMS = 100
// BENCH_RATE: the offered rate of the 200 req/s phases, for a shared machine that cannot take 200.
const RATE = Number(process.env.BENCH_RATE ?? 200)
export const SWEEP_RATES = [50, 100, 150, 200, 300, 400, 500, 600, 800]
const PEER_SWEEP_RATES = [25, 50, 100, 150, 200, 300, 400, 500, 600, 800]

type Server = Awaited<ReturnType<typeof startServer>>

function baseEnv(ctx: RunContext, prefix: string): Record<string, string> {
  return { REDIS_URL: ctx.redis.url, REDIS_PREFIX: prefix, IMAGE_ALLOWED_HOSTS: '127.0.0.1' }
}

function sampleItems(ctx: RunContext) {
  return ctx.sample.items.map((it) => itemVariant(it, 0, ctx.origin.base))
}

async function startProfiled(ctx: RunContext, name: string, env: Record<string, string>): Promise<Server & { profDir: string | undefined }> {
  const profDir = ctx.profileDir === undefined ? undefined : join(ctx.profileDir, name)
  if (profDir !== undefined) {
    rmSync(profDir, { recursive: true, force: true })
    mkdirSync(profDir, { recursive: true })
  }
  const s = await startServer(name, { env, ...(profDir !== undefined ? { cpuProfDir: profDir } : {}) })
  ctx.log(`  ${name} ready, RSS ${memory(s.child.pid)?.rssMiB ?? '?'} MiB`)
  return { ...s, profDir }
}

/** Stops the server and attaches the summary of the CPU profile it wrote on exit. */
async function stopProfiled(r: ScenarioResult, s: Server & { profDir: string | undefined }): Promise<void> {
  await s.child.stop(20_000)
  const f = s.profDir !== undefined && existsSync(s.profDir) ? latestProfile(s.profDir) : undefined
  if (f) r.profile = summarizeProfile(f, 15)
}

async function warmSample(ctx: RunContext, base: string, timeoutMs: number) {
  return warmUntilL1(base, sampleItems(ctx), ctx.sample.contexts[0], { timeoutMs })
}

/** Runs one optional phase; a failure becomes a note instead of losing the scenario's other figures. */
async function optional(ctx: RunContext, r: ScenarioResult, name: string, f: () => Promise<void>): Promise<void> {
  try {
    await f()
  } catch (err) {
    ctx.log(`  ${name} failed: ${err instanceof Error ? err.message : String(err)}`)
    r.notes.push(`${name} failed: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`)
  }
}

async function pass(ctx: RunContext, target: Server, file: string, rate: number, durationS: number, extra: Partial<Parameters<typeof measure>[3]> = {}): Promise<Measurement> {
  ctx.log(`  load: ${rate} req/s for ${durationS} s (${extra.mode ?? 'open'})`)
  return measure({ kind: 'ctrserve', base: target.base, pid: target.child.pid }, `${target.base}/predict`, file,
    { mode: 'open', rate, durationS, connections: 64, ...extra }, infra(ctx))
}

/** Starts a scenario on the warm prefix with an empty embedding queue (see resetQueue). */
async function cleanQueue(ctx: RunContext, r: ScenarioResult): Promise<void> {
  const q = await resetQueue(ctx.redis.url, ctx.warmPrefix)
  if (q.keys > 0) r.notes.push(`embedding queue left by earlier phases on the warm prefix deleted before this scenario: ${q.keys} keys, ${q.streamJobs} jobs in the streams`)
}

/** Warm Redis under ctx.warmPrefix with every sample item, through a server that is then stopped. */
export async function ensureSeeded(ctx: RunContext): Promise<void> {
  if (ctx.seeded) return
  await ctx.origin.setProfile('fast')
  const s = await startServer('ctrserve-seed', { env: baseEnv(ctx, ctx.warmPrefix) })
  try {
    const w = await warmSample(ctx, s.base, 180_000)
    ctx.log(`  seeded Redis: ${JSON.stringify(w)}`)
    ctx.seeded = w.notL1 === 0
  } finally {
    await s.child.stop()
  }
}

export async function scenario1(ctx: RunContext): Promise<ScenarioResult> {
  const r = newResult(1, 'all-l1-hits', 'All L1 hits', 'Fresh ctrserve with Redis; every sample item embedded through the server (origin `fast`) until every source is `l1`; Zipf(1.0) over the 1500 sample items, 100 items/request, open loop at 200 req/s; then autocannon -R 200 as a cross-check and an open-loop rate sweep (stops after the first rate with p99 > 50 ms).', { items: ITEMS, rate: RATE })
  await ctx.origin.setProfile('fast')
  const s = await startProfiled(ctx, 'sc1', baseEnv(ctx, ctx.warmPrefix))
  try {
    r.warm = await warmSample(ctx, s.base, 180_000)
    ctx.seeded = r.warm.notL1 === 0
    await ctx.origin.setProfile('default')
    const w = makeWorkload(ctx, 'sc1', { requests: 2000, itemsPerRequest: ITEMS, zipfS: 1.0, newShare: 0, newBase: 0, seed: 11 })
    r.workload = w.stats
    r.main = await pass(ctx, s, w.file, RATE, seconds(ctx, 25))
    await optional(ctx, r, 'autocannon-200', async () => { r.extra['autocannon-200'] = await pass(ctx, s, w.file, RATE, seconds(ctx, 15), { mode: 'autocannon', connections: 50 }) })
    await optional(ctx, r, 'items-10', async () => { r.extra['items-10'] = await pass(ctx, s, makeWorkload(ctx, 'sc1-10', { requests: 2000, itemsPerRequest: 10, zipfS: 1.0, newShare: 0, newBase: 0, seed: 12 }).file, RATE, seconds(ctx, 10)) })
    await optional(ctx, r, 'items-500', async () => { r.extra['items-500'] = await pass(ctx, s, makeWorkload(ctx, 'sc1-500', { requests: 400, itemsPerRequest: 500, zipfS: 1.0, newShare: 0, newBase: 0, seed: 13 }).file, 50, seconds(ctx, 10)) })
    await optional(ctx, r, 'sweep', async () => { r.sweeps = await sweep(ctx, [{ name: 'ctrserve (sc1)', target: { kind: 'ctrserve', base: s.base, pid: s.child.pid } }], w.file, SWEEP_RATES, seconds(ctx, 8)) })
  } finally {
    await stopProfiled(r, s)
  }
  return r
}

export async function scenario2(ctx: RunContext): Promise<ScenarioResult> {
  const variants = 20_000
  const r = newResult(2, 'l2-hits', 'L2 hits (fresh instance, warm Redis)', `Redis holds the vectors of ${variants} distinct items (sample items under new URLs/titles, copied from the seeded keys); a fresh ctrserve with the smallest L1 (1 MiB, ~180 image vectors) gets uniform traffic over them, so nearly every lookup goes to Redis (one MGET of ~200 keys, ~1.1 MB, per request); 100 items/request at 50, 100 (headline) and 200 req/s.`, { items: ITEMS, rates: [50, 100, 200], variants, L1_MAX_BYTES: 1_048_576 })
  await ensureSeeded(ctx)
  await cleanQueue(ctx, r)
  const n = await copyVariantsInRedis({
    redisUrl: ctx.redis.url, prefix: ctx.warmPrefix, versions: { image: ctx.manifest.encoders.image.version, text: ctx.manifest.encoders.text.version },
    sample: ctx.sample, originBase: ctx.origin.base, count: variants, ttlSeconds: 3600,
  })
  r.notes.push(`${n} variants written to Redis`)
  await ctx.origin.setProfile('default')
  const s = await startProfiled(ctx, 'sc2', { ...baseEnv(ctx, ctx.warmPrefix), L1_MAX_BYTES: '1048576' })
  try {
    const w = makeWorkload(ctx, 'sc2', { requests: 2000, itemsPerRequest: ITEMS, zipfS: 0, newShare: 0, newBase: 0, variants, seed: 21 })
    r.workload = w.stats
    await optional(ctx, r, 'rate-50', async () => { r.extra['rate-50'] = await pass(ctx, s, w.file, 50, seconds(ctx, 10)) })
    r.main = await pass(ctx, s, w.file, 100, seconds(ctx, 20))
    await optional(ctx, r, 'rate-200', async () => { r.extra['rate-200'] = await pass(ctx, s, w.file, RATE, seconds(ctx, 10)) })
  } finally {
    await stopProfiled(r, s)
  }
  return r
}

export async function scenario3(ctx: RunContext): Promise<ScenarioResult> {
  const r = newResult(3, 'steady-state', 'Steady state: Zipf, 1% new items, oov policy', 'Fresh ctrserve, L1 warmed from the seeded Redis; Zipf(1.0) traffic with 1% never-seen items per request (new image URL on the `default` origin: 20–150 ms, 3% 1–3 s, 1% 404, 1% 503; new title); `oov` policy, background embedding running; 100 items/request at 200 req/s.', { items: ITEMS, rate: RATE, newShare: 0.01 })
  await ensureSeeded(ctx)
  await cleanQueue(ctx, r)
  await ctx.origin.setProfile('fast')
  const s = await startProfiled(ctx, 'sc3', baseEnv(ctx, ctx.warmPrefix))
  try {
    r.warm = await warmSample(ctx, s.base, 60_000)
    await ctx.origin.setProfile('default')
    const dur = seconds(ctx, 25)
    const w = makeWorkload(ctx, 'sc3', { requests: RATE * dur, itemsPerRequest: ITEMS, zipfS: 1.0, newShare: 0.01, newBase: 1_000_000, seed: 31 })
    r.workload = w.stats
    r.main = await pass(ctx, s, w.file, RATE, dur)
  } finally {
    await stopProfiled(r, s)
  }
  return r
}

export async function scenario4(ctx: RunContext): Promise<ScenarioResult> {
  const r = newResult(4, 'cold-start', 'Cold start: every item new, oov policy', 'Fresh ctrserve on an empty Redis prefix; every item of every request is never-seen (new URL on the `default` origin, new title), so all are answered with OOV vectors and queued; the background embeds at full speed (queue bounded at 100k per modality); 100 items/request at 200 req/s.', { items: ITEMS, rate: RATE, newShare: 1 })
  await ctx.origin.setProfile('default')
  // The server's encoder settings (defaults: one image worker, one ORT thread, batches of 16).
  const raw = await rawImageEncoderRate({ modelDir: 'models/ctr-synth', sampleDir: SAMPLE_DIR, workers: 1, ortThreads: 1, batch: 16, images: 960 })
  const s = await startProfiled(ctx, 'sc4', baseEnv(ctx, `cold${Date.now()}`))
  try {
    const dur = seconds(ctx, 20)
    const w = makeWorkload(ctx, 'sc4', { requests: RATE * dur, itemsPerRequest: ITEMS, zipfS: 1.0, newShare: 1, newBase: 2_000_000, seed: 41 })
    r.workload = w.stats
    r.main = await pass(ctx, s, w.file, RATE, dur)
    const cold = r.main?.imagesEmbeddedPerS ?? 0
    r.embedding = { rawImagesPerS: Math.round(raw * 10) / 10, coldImagesPerS: cold, share: Math.round((cold / raw) * 1000) / 1000 }
  } finally {
    await stopProfiled(r, s)
  }
  return r
}

export async function scenario5(ctx: RunContext): Promise<ScenarioResult> {
  const r = newResult(5, 'budget-slow-origin', 'Budget policy, slow origin', 'Fresh ctrserve, L1 warmed from the seeded Redis; requests ask for `miss_policy: budget` (budget 200 ms); Zipf(1.0) with 2% never-seen items whose images come from the `slow` origin (80–400 ms, 8% 1–3 s, 1% 404, 1% 503): a miss is computed inline only when the smoothed encoder cost fits the time left, else OOV; 100 items/request at 200 req/s.', { items: ITEMS, rate: RATE, newShare: 0.02, budgetMs: 200 })
  await ensureSeeded(ctx)
  await cleanQueue(ctx, r)
  await ctx.origin.setProfile('fast')
  const s = await startProfiled(ctx, 'sc5', baseEnv(ctx, ctx.warmPrefix))
  try {
    r.warm = await warmSample(ctx, s.base, 60_000)
    await ctx.origin.setProfile('slow')
    const dur = seconds(ctx, 25)
    const w = makeWorkload(ctx, 'sc5', { requests: RATE * dur, itemsPerRequest: ITEMS, zipfS: 1.0, newShare: 0.02, newBase: 3_000_000, seed: 51, options: { miss_policy: 'budget', budget_ms: 200 } })
    r.workload = w.stats
    r.main = await pass(ctx, s, w.file, RATE, dur)
  } finally {
    await stopProfiled(r, s)
  }
  return r
}

export async function scenario6(ctx: RunContext): Promise<ScenarioResult> {
  const r = newResult(6, 'no-cache', 'No cache: encoders on every request', 'What the cache saves. ctrserve without Redis and with the smallest L1 (1 MiB); every item of every request is never-seen, and requests ask for `miss_policy: budget` with `budget_ms: 60000`, so every image is fetched (origin `fast`: 1–5 ms, no failures, so the figure is mostly decode + encoders) and both encoders run on the request path. Closed loop, one connection (the server cannot sustain any fixed rate here); 100 items/request.', { items: ITEMS, connections: 1, L1_MAX_BYTES: 1_048_576, budgetMs: 60_000 })
  await ctx.origin.setProfile('fast')
  // Every miss inline is the point here: the serving bounds on inline work are lifted.
  const s = await startProfiled(ctx, 'sc6', { IMAGE_ALLOWED_HOSTS: '127.0.0.1', L1_MAX_BYTES: '1048576', BUDGET_MS: '60000', MAX_BUDGET_MS: '60000', INLINE_MAX_ITEMS: '100', INLINE_CONCURRENCY: '200', IMAGE_FETCH_TIMEOUT_MS: '10000' })
  try {
    const w = makeWorkload(ctx, 'sc6', { requests: 60, itemsPerRequest: ITEMS, zipfS: 1.0, newShare: 1, newBase: 4_000_000, seed: 61, options: { miss_policy: 'budget', budget_ms: 60_000 } })
    r.workload = w.stats
    ctx.log('  load: closed loop, 1 connection')
    r.main = await measure({ kind: 'ctrserve', base: s.base, pid: s.child.pid }, `${s.base}/predict`, w.file,
      { mode: 'closed', rate: 0, durationS: seconds(ctx, 30), connections: 1, amount: 60, sampleEvery: 1, timeoutMs: 60_000 }, [{ role: 'origin', pid: ctx.origin.child.pid }])
  } finally {
    await stopProfiled(r, s)
  }
  return r
}

export async function scenario7(ctx: RunContext): Promise<ScenarioResult> {
  const r = newResult(7, 'compute-ceiling', 'Compute ceiling: head + statistics in-process', 'A separate process loads the bundle, builds 100-item head inputs from the workload (real field rows, OOV embedding rows) and loops head.run() + ctrDistribution() for every item, one thread, no HTTP, no cache; requests/s = 1000 / mean(head + stats) ms. Nothing else runs meanwhile.', { items: ITEMS })
  const w = makeWorkload(ctx, 'sc7', { requests: 200, itemsPerRequest: ITEMS, zipfS: 1.0, newShare: 0, newBase: 0, seed: 11 })
  r.workload = w.stats
  r.ceiling = await measureCeilingInChild(ctx, w.file, seconds(ctx, 12))
  return r
}

export async function scenario8(ctx: RunContext): Promise<ScenarioResult> {
  const r = newResult(8, 'peer-python', 'Peer: FastAPI + onnxruntime + redis-py', 'bench/peer/app.py under uvicorn (1 worker, uvloop, httptools) on the same Redis and keys, L1 warmed from the seeded Redis. Both the peer and a fresh ctrserve (scenario-1 configuration, warmed the same way) stay up and idle while the other is measured: the scenario-1 workload (same seed) at 200 req/s on the peer, then one open-loop sweep with the two targets interleaved step by step (same machine noise), then a steady-state workload (1% new items) at 200 req/s on the peer.', { items: ITEMS, rate: RATE })
  await ensureSeeded(ctx)
  await cleanQueue(ctx, r)
  await ctx.origin.setProfile('fast')
  const p = await startPeer('peer', { REDIS_URL: ctx.redis.url, REDIS_PREFIX: ctx.warmPrefix, IMAGE_ALLOWED_HOSTS: '127.0.0.1' })
  const s = await startServer('ctrserve-sc8', { env: baseEnv(ctx, ctx.warmPrefix) })
  const peer = { kind: 'peer' as const, base: p.base, pid: p.child.pid }
  const server = { kind: 'ctrserve' as const, base: s.base, pid: s.child.pid }
  const others = [...infra(ctx), { role: 'idle-ctrserve', pid: s.child.pid }]
  const run = (file: string, rate: number, dur: number): Promise<Measurement> => {
    ctx.log(`  load: ${rate} req/s for ${dur} s (peer)`)
    return measure(peer, `${p.base}/predict`, file, { mode: 'open', rate, durationS: dur, connections: 64 }, others)
  }
  try {
    r.warm = await warmSample(ctx, p.base, 60_000)
    const ws = await warmSample(ctx, s.base, 60_000)
    r.notes.push(`ctrserve warm-up: ${JSON.stringify(ws)}`)
    await ctx.origin.setProfile('default')
    const w = makeWorkload(ctx, 'sc8', { requests: 2000, itemsPerRequest: ITEMS, zipfS: 1.0, newShare: 0, newBase: 0, seed: 11 })
    r.workload = w.stats
    const first = JSON.parse(readLines(w.file)[0] ?? '{}') as PredictBody
    r.notes.push(parity(JSON.stringify(await predict(s.base, first)), JSON.stringify(await predict(p.base, first))))
    r.main = await run(w.file, RATE, seconds(ctx, 20))
    await optional(ctx, r, 'sweep', async () => { r.sweeps = await sweep(ctx, [{ name: 'ctrserve (sc8, interleaved)', target: server }, { name: 'peer (sc8, interleaved)', target: peer }], w.file, PEER_SWEEP_RATES, seconds(ctx, 8)) })
    const dur = seconds(ctx, 15)
    const wst = makeWorkload(ctx, 'sc8-steady', { requests: RATE * dur, itemsPerRequest: ITEMS, zipfS: 1.0, newShare: 0.01, newBase: 5_000_000, seed: 81 })
    await optional(ctx, r, 'steady-state-200', async () => { r.extra['steady-state-200'] = await run(wst.file, RATE, dur) })
  } finally {
    await Promise.all([p.child.stop(), s.child.stop()])
  }
  return r
}

interface Pred { predictions: Array<{ ctr: { mean: number; raw_mean: number; quantiles: Record<string, number> } }> }

function parity(refText: string, peerText: string): string {
  const a = JSON.parse(refText) as Pred
  const b = JSON.parse(peerText) as Pred
  let dMean = 0
  let dQ = 0
  a.predictions.forEach((p, i) => {
    const q = b.predictions[i]
    if (!q) return
    dMean = Math.max(dMean, Math.abs(p.ctr.mean - q.ctr.mean), Math.abs(p.ctr.raw_mean - q.ctr.raw_mean))
    for (const [k, v] of Object.entries(p.ctr.quantiles)) dQ = Math.max(dQ, Math.abs(v - (q.ctr.quantiles[k] ?? Number.NaN)))
  })
  return `parity with ctrserve on the first body (${a.predictions.length} items, both all-L1): max |Δ mean/raw_mean| ${dMean.toExponential(2)}, max |Δ quantile| ${dQ.toExponential(2)}`
}

export async function scenario9(ctx: RunContext): Promise<ScenarioResult> {
  const burstRequests = 600
  const hotCount = 100
  const r = newResult(9, 'recovery', 'Recovery: popular items first after a burst', `Fresh ctrserve, in-process queue (no Redis, QUEUE_CAPACITY 250000, QUEUE_CLIENT_RATE and QUEUE_INSTANCE_RATE 0: no admission bound), origin \`default\`. A burst of ${burstRequests} requests × ${ITEMS} never-seen items at ${RATE} req/s leaves ≥ 100k embedding jobs (image + title) queued; then Zipf(1.0) traffic over a hot set of ${hotCount} sample items (never seen before either: 20 items/request, 50 req/s, open loop) while a probe asks for the whole hot set every 500 ms. Reported: seconds from the end of the burst until one probe finds the whole hot set in L1, and the L1 hit rate over time (probe and traffic).`, { items: ITEMS, burstRequests, hotCount, QUEUE_CAPACITY: 250_000, QUEUE_CLIENT_RATE: 0, QUEUE_INSTANCE_RATE: 0 })
  await ctx.origin.setProfile('default')
  // The burst is what the admission bounds exist to refuse (QUEUE_CLIENT_RATE would keep all but
  // ~2,000 of its jobs out, QUEUE_INSTANCE_RATE all but ~10,000): both off, so the backlog forms.
  const s = await startProfiled(ctx, 'sc9', { IMAGE_ALLOWED_HOSTS: '127.0.0.1', QUEUE_CAPACITY: '250000', QUEUE_CLIENT_RATE: '0', QUEUE_INSTANCE_RATE: '0' })
  try {
    const burst = makeWorkload(ctx, 'sc9-burst', { requests: burstRequests, itemsPerRequest: ITEMS, zipfS: 1.0, newShare: 1, newBase: 7_000_000, seed: 91 })
    r.workload = burst.stats
    r.extra.burst = await pass(ctx, s, burst.file, RATE, Math.ceil(burstRequests / RATE))
    const queued = await queueDepth(s.base)
    ctx.log(`  queued after the burst: ${queued}`)
    const hot = sampleItems(ctx).slice(0, hotCount)
    r.recovery = await measureRecovery(s.base, hot, ctx.sample.contexts[0], queued, { maxSeconds: seconds(ctx, 60), probeEveryMs: 500, trafficRate: 50, trafficItems: 20, zipfS: 1.0, seed: 92 })
    ctx.log(`  hot set all L1 after ${r.recovery.secondsToAllL1 ?? 'never'} s (${r.recovery.series.length} probes)`)
  } finally {
    await stopProfiled(r, s)
  }
  return r
}

export const SCENARIOS: Record<number, (ctx: RunContext) => Promise<ScenarioResult>> = {
  1: scenario1, 2: scenario2, 3: scenario3, 4: scenario4, 5: scenario5, 6: scenario6, 7: scenario7, 8: scenario8, 9: scenario9,
}
