import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawnChild, stopAll, waitFor } from './lib/children.ts'
import { type Measurement, measure } from './lib/measure.ts'
import { num, parseArgs, str } from './lib/args.ts'
import { memory, threadCpu } from './lib/proc-stats.ts'
import { type PredictBody, type PredictItem, itemVariant, loadSample } from './lib/sample.ts'
import { startServer } from './lib/services.ts'
import { warmUntilL1 } from './lib/warm.ts'
import { writeBodies, zipfSampler } from './workload.ts'
import { latestProfile, summarizeProfile } from './profile-summary.ts'
import { rng } from '../support/random.ts'

// The all-hits path (issue 11): embedded mode (no Redis), 2000 items warmed into L1 (kept as an L1
// snapshot in bench/.scratch so later runs skip the encoders), Zipf(1.0) traffic, open loop. For
// each rate: p50/p99, throughput, and the server's CPU per request (all threads and processes, and
// the request thread alone). Then 500 items per request at 50 req/s, and the server's RSS.
//
//   flock /work/locks/bench.lock npx tsx bench/hit-path.ts --label after --concurrency 2 --rates 200,400,800,1000

const WARM_ITEMS = 2000
// A fixed origin port: image URLs (hence cache keys) stay the same from run to run, so the L1
// snapshot of an earlier run holds every item.
const ORIGIN_PORT = 47311
const SCRATCH = 'bench/.scratch'

interface Point {
  readonly rate: number
  readonly items: number
  readonly throughput: number
  readonly p50: number
  readonly p99: number
  readonly errors: number
  /** Server CPU per completed request, ms (every thread and process of the server). */
  readonly cpuMsPerRequest: number
  /** CPU of the thread that accepts connections (the primary's or single process' main thread), ms per request. */
  readonly mainCpuMsPerRequest: number
  readonly driverCores: number
  readonly otherCores: number
  readonly loadAverage: number
  /** Server threads that used ≥ 0.05 ms per request: "name/tid" → CPU ms per completed request. */
  readonly threads: Record<string, number>
  /** Answers by HTTP status (503 = shed) and driver-side failures (timeouts). */
  readonly statusCounts: Record<string, number>
  /** Requests that failed or answered 2xx more than 200 ms after their due time, as a share of those sent. */
  readonly lateOrFailedShare: number
}

function threadName(pid: number, tid: number): string {
  try { return readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() } catch { return '?' }
}

/** CPU per request of each server thread over one measured step (where the non-request-thread CPU goes). */
async function withThreads(pid: number, run: () => Promise<Measurement>): Promise<{ m: Measurement; perThread: (done: number) => Record<string, number> }> {
  const t0 = threadCpu(pid)
  const m = await run()
  const t1 = threadCpu(pid)
  return {
    m,
    perThread: (done) => Object.fromEntries([...t1].map(([tid, s]) => [`${threadName(pid, tid)}/${tid}`, Math.round(((s - (t0.get(tid) ?? 0)) * 1e6) / Math.max(1, done)) / 1000] as const)
      .filter(([, ms]) => ms >= 0.05).sort((a, b) => b[1] - a[1])),
  }
}

function items(originBase: string): PredictItem[] {
  const sample = loadSample()
  const out = sample.items.map((it) => itemVariant(it, 0, originBase))
  for (let i = 0; out.length < WARM_ITEMS; i++) out.push(itemVariant(sample.items[i % sample.items.length] as PredictItem, 1, originBase))
  return out
}

function workload(file: string, pool: readonly PredictItem[], perRequest: number, requests: number, seed: number): void {
  const rand = rng(seed)
  const next = zipfSampler(pool.length, 1.0, rand)
  const contexts = loadSample().contexts
  const bodies: PredictBody[] = []
  for (let r = 0; r < requests; r++) {
    const its = Array.from({ length: perRequest }, () => pool[next()] as PredictItem)
    bodies.push({ context: contexts[r % contexts.length], items: its })
  }
  writeBodies(file, bodies)
}

async function step(pid: number, rate: number, itemsPerRequest: number, run: () => Promise<Measurement>): Promise<Point> {
  const { m, perThread } = await withThreads(pid, run)
  return { ...point(rate, itemsPerRequest, m), threads: perThread(m.driver.throughput * m.load.durationS) }
}

function point(rate: number, itemsPerRequest: number, m: Measurement): Omit<Point, 'threads'> {
  const d = m.driver
  const per = (cores: number | undefined): number => Math.round(((cores ?? Number.NaN) * 1000 / Math.max(1, d.throughput)) * 1000) / 1000
  return {
    rate, items: itemsPerRequest, throughput: d.throughput, p50: d.latency.p50, p99: d.latency.p99, errors: d.errors,
    cpuMsPerRequest: per(m.cpu.server), mainCpuMsPerRequest: per(m.cpu.serverMainThread),
    driverCores: m.cpu.driver ?? Number.NaN, otherCores: m.cpu.other ?? Number.NaN, loadAverage: m.loadAverage,
    statusCounts: d.statusCounts, lateOrFailedShare: d.lateOrFailed.share,
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const label = str(args, 'label', 'run')
  const rates = str(args, 'rates', '200,400,600,800,1000').split(',').map(Number)
  const stepS = num(args, 'step', 8)
  const env: Record<string, string> = { IMAGE_ALLOWED_HOSTS: '127.0.0.1', L1_SNAPSHOT_INTERVAL_S: '0' }
  const concurrency = args.get('concurrency')
  if (concurrency) env.WEB_CONCURRENCY = concurrency
  // Extra server environment for A/B runs, e.g. --env NODE_OPTIONS=--max-semi-space-size=64
  for (const kv of str(args, 'env', '').split(';').filter(Boolean)) {
    const at = kv.indexOf('=')
    env[kv.slice(0, at)] = kv.slice(at + 1)
  }
  mkdirSync(SCRATCH, { recursive: true })
  const port = num(args, 'origin-port', ORIGIN_PORT)
  const originChild = spawnChild('origin', process.execPath, ['--import', 'tsx', 'bench/image-origin.ts', '--profile', 'fast', '--port', String(port), '--max-seconds', '3600'])
  const origin = { base: `http://127.0.0.1:${port}` }
  await waitFor('origin', async () => (await fetch(`${origin.base}/nope`).catch(() => undefined)) !== undefined, 15_000, 100, originChild)
  const pool = items(origin.base)
  const snap = join(SCRATCH, 'l1-snapshot-hit-path.bin')
  const profDir = join(SCRATCH, `prof-${label}`)
  rmSync(profDir, { recursive: true, force: true })
  const results: { label: string; startedAt: string; env: Record<string, string>; points: Point[]; rssMiB?: number; warm?: unknown; profile?: unknown } = { label, startedAt: new Date().toISOString(), env, points: [] }
  try {
    if (!existsSync(snap)) {
      // Warm once through the server itself; it writes the snapshot on shutdown.
      const s = await startServer('hit-path-warm', { env: { ...env, L1_SNAPSHOT_PATH: snap } })
      results.warm = await warmUntilL1(s.base, pool, undefined, { timeoutMs: 600_000 })
      await s.child.stop(60_000)
    }
    const run = join(SCRATCH, `l1-${label}.bin`)
    copyFileSync(snap, run)
    const s = await startServer('hit-path', { env: { ...env, L1_SNAPSHOT_PATH: run }, ...(args.has('profile') ? { cpuProfDir: profDir } : {}) })
    results.warm = await warmUntilL1(s.base, pool, undefined, { timeoutMs: 120_000 })
    const w100 = join(SCRATCH, 'hit-path-100.jsonl')
    const w500 = join(SCRATCH, 'hit-path-500.jsonl')
    workload(w100, pool, 100, 2000, 11)
    workload(w500, pool, 500, 400, 13)
    const target = { kind: 'ctrserve' as const, base: s.base, pid: s.child.pid }
    const load = (rate: number, durationS: number) => ({ mode: 'open' as const, rate, durationS, connections: 64, sampleEvery: 50, timeoutMs: 5000 })
    // Warm-up pass (JIT, buffers), not recorded.
    await measure(target, `${s.base}/predict`, w100, load(100, 3), [])
    for (const rate of rates) {
      const p = await step(s.child.pid, rate, 100, () => measure(target, `${s.base}/predict`, w100, load(rate, stepS), []))
      results.points.push(p)
      process.stdout.write(`${JSON.stringify(p)}\n`)
      // Past saturation every further step only measures timeouts.
      if (p.errors > 0.01 * rate * stepS) break
    }
    const p500 = await step(s.child.pid, 50, 500, () => measure(target, `${s.base}/predict`, w500, load(50, stepS), []))
    results.points.push(p500)
    process.stdout.write(`${JSON.stringify(p500)}\n`)
    results.rssMiB = memory(s.child.pid)?.rssMiB
    await s.child.stop(30_000)
    const prof = existsSync(profDir) ? latestProfile(profDir) : undefined
    if (prof) results.profile = summarizeProfile(prof, 25)
  } finally {
    await stopAll()
  }
  mkdirSync('bench/results', { recursive: true })
  const out = join('bench/results', `hit-path-${label}`)
  writeFileSync(`${out}.json`, `${JSON.stringify(results, null, 2)}\n`)
  const rows = results.points.map((p) => `| ${p.items} | ${p.rate} | ${p.throughput} | ${p.p50} | ${p.p99} | ${p.errors} ${JSON.stringify(p.statusCounts)} | ${p.cpuMsPerRequest} | ${p.mainCpuMsPerRequest} | ${p.driverCores} | ${p.otherCores} | ${p.loadAverage} |`)
  writeFileSync(`${out}.md`, [`# Hit path: ${label} (${results.startedAt})`, '', `env: \`${JSON.stringify(env)}\`, RSS at end ${results.rssMiB} MiB`, '',
    '| items | rate | done/s | p50 ms | p99 ms | errors (statuses) | server CPU ms/req | main-thread CPU ms/req | driver cores | other cores | load avg |',
    '|---|---|---|---|---|---|---|---|---|---|---|', ...rows, ''].join('\n'))
  process.stdout.write(`wrote ${out}.json and .md\n`)
}

await main()
