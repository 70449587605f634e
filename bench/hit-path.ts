import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { type Child, spawnChild, stopAll, waitFor } from './lib/children.ts'
import { type Measurement, type Target, measure } from './lib/measure.ts'
import { num, parseArgs, str } from './lib/args.ts'
import { diff, scrape, sumBy } from './lib/metrics.ts'
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
//
// A/B: `--against <checkout>` (another commit's tree with its node_modules, e.g. a git worktree)
// runs its server beside this one and alternates their steps at every rate (a, b, then b, a; `--rounds`
// pairs): the machine's speed drifts by up to 1.7× within minutes here, so only interleaved steps
// compare. Points carry `side` ("a" this tree, "b" the other); the summary gives the median of each
// side's steps and b/a.

const WARM_ITEMS = 2000
// A fixed origin port: image URLs (hence cache keys) stay the same from run to run, so the L1
// snapshot of an earlier run holds every item.
const ORIGIN_PORT = 47311
const SCRATCH = 'bench/.scratch'
const MIXED_SIZES = [1, 2, 3, 5, 8, 12, 20, 30, 50, 100, 200, 300] as const

interface Point {
  /** A/B runs (--against): "a" this tree's server, "b" the other checkout's. */
  readonly side?: 'a' | 'b'
  readonly rate: number
  /** Items per request (the mean, rounded, in the mixed step). */
  readonly items: number
  /** The mixed step's request sizes, taken in turn. */
  readonly sizes?: readonly number[]
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
  /** The server's sheds in the step by reason (ctrserve_shed_requests_total: eventLoopDelay, scorer_backlog). */
  readonly shedByReason: Record<string, number>
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

/** Items per request: one size, or sizes taken in turn (the mixed step). */
function workload(file: string, pool: readonly PredictItem[], perRequest: number | readonly number[], requests: number, seed: number): void {
  const rand = rng(seed)
  const next = zipfSampler(pool.length, 1.0, rand)
  const contexts = loadSample().contexts
  const bodies: PredictBody[] = []
  for (let r = 0; r < requests; r++) {
    const length = typeof perRequest === 'number' ? perRequest : perRequest[r % perRequest.length] as number
    const its = Array.from({ length }, () => pool[next()] as PredictItem)
    bodies.push({ context: contexts[r % contexts.length], items: its })
  }
  writeBodies(file, bodies)
}

async function step(target: Target, rate: number, itemsPerRequest: number, run: () => Promise<Measurement>): Promise<Point> {
  const before = await scrape(target.base)
  const { m, perThread } = await withThreads(target.pid, run)
  const shed = sumBy(diff(before, await scrape(target.base)), 'ctrserve_shed_requests_total', 'reason')
  const shedByReason = Object.fromEntries(Object.entries(shed).filter(([, n]) => n > 0))
  return { ...point(rate, itemsPerRequest, m), shedByReason, threads: perThread(m.driver.throughput * m.load.durationS) }
}

function point(rate: number, itemsPerRequest: number, m: Measurement): Omit<Point, 'threads' | 'shedByReason'> {
  const d = m.driver
  const per = (cores: number | undefined): number => Math.round(((cores ?? Number.NaN) * 1000 / Math.max(1, d.throughput)) * 1000) / 1000
  return {
    rate, items: itemsPerRequest, throughput: d.throughput, p50: d.latency.p50, p99: d.latency.p99, errors: d.errors,
    cpuMsPerRequest: per(m.cpu.server), mainCpuMsPerRequest: per(m.cpu.serverMainThread),
    driverCores: m.cpu.driver ?? Number.NaN, otherCores: m.cpu.other ?? Number.NaN, loadAverage: m.loadAverage,
    statusCounts: d.statusCounts, lateOrFailedShare: d.lateOrFailed.share,
  }
}

function median(xs: readonly number[]): number {
  const v = [...xs].sort((x, y) => x - y)
  return v.length === 0 ? Number.NaN : v.length % 2 === 1 ? v[v.length >> 1] as number : ((v[v.length / 2 - 1] as number) + (v[v.length / 2] as number)) / 2
}

/** Per rate and size: each side's median server CPU per request, p99 and throughput, and b/a of the CPU. */
function abSummary(points: readonly Point[]): string[] {
  const groups = new Map<string, Point[]>()
  for (const p of points) groups.set(`${p.items}@${p.rate}`, [...(groups.get(`${p.items}@${p.rate}`) ?? []), p])
  return [...groups].map(([key, ps]) => {
    const of = (side: 'a' | 'b', f: (p: Point) => number): number => median(ps.filter((p) => p.side === side).map(f))
    const cpu = { a: of('a', (p) => p.cpuMsPerRequest), b: of('b', (p) => p.cpuMsPerRequest) }
    return `${key}: server CPU ms/req a ${cpu.a.toFixed(2)}, b ${cpu.b.toFixed(2)} (b/a ${(cpu.b / cpu.a).toFixed(3)}); ` +
      `p99 ms a ${of('a', (p) => p.p99).toFixed(1)}, b ${of('b', (p) => p.p99).toFixed(1)}; done/s a ${of('a', (p) => p.throughput).toFixed(1)}, b ${of('b', (p) => p.throughput).toFixed(1)}`
  })
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
  const results: { label: string; startedAt: string; env: Record<string, string>; against?: string; points: Point[]; rssMiB?: number; rssMiBAgainst?: number; summary?: string[]; warm?: unknown; profile?: unknown } = { label, startedAt: new Date().toISOString(), env, ...(args.get('against') ? { against: args.get('against') } : {}), points: [] }
  try {
    if (!existsSync(snap)) {
      // Warm once through the server itself; it writes the snapshot on shutdown.
      const s = await startServer('hit-path-warm', { env: { ...env, L1_SNAPSHOT_PATH: snap } })
      results.warm = await warmUntilL1(s.base, pool, undefined, { timeoutMs: 600_000 })
      await s.child.stop(60_000)
    }
    const against = args.get('against')
    const sides = [{ side: 'a' as const, dir: undefined }, ...(against ? [{ side: 'b' as const, dir: against }] : [])]
    const servers: Array<{ side: 'a' | 'b'; s: { child: Child; base: string }; target: Target }> = []
    for (const { side, dir } of sides) {
      const run = join(SCRATCH, `l1-${label}-${side}.bin`)
      copyFileSync(snap, run)
      const s = await startServer(`hit-path-${side}`, { env: { ...env, L1_SNAPSHOT_PATH: resolve(run) }, ...(dir ? { dir } : {}), ...(args.has('profile') && side === 'a' ? { cpuProfDir: profDir } : {}) })
      results.warm = await warmUntilL1(s.base, pool, undefined, { timeoutMs: 120_000 })
      servers.push({ side, s, target: { kind: 'ctrserve' as const, base: s.base, pid: s.child.pid } })
    }
    const w100 = join(SCRATCH, 'hit-path-100.jsonl')
    const w500 = join(SCRATCH, 'hit-path-500.jsonl')
    workload(w100, pool, 100, 2000, 11)
    workload(w500, pool, 500, 400, 13)
    const load = (rate: number, durationS: number) => ({ mode: 'open' as const, rate, durationS, connections: 64, sampleEvery: 50, timeoutMs: 5000 })
    // Warm-up pass (JIT, buffers), not recorded.
    for (const { target } of servers) await measure(target, `${target.base}/predict`, w100, load(100, 3), [])
    const rounds = against ? num(args, 'rounds', 2) : 1
    /** Each server's steps at one rate and size, alternating a, b, then b, a. */
    const stepAll = async (rate: number, items: number, bodies: string, sizes?: readonly number[]): Promise<Point[]> => {
      const done: Point[] = []
      for (let r = 0; r < rounds; r++) {
        for (const { side, target } of r % 2 === 0 ? servers : [...servers].reverse()) {
          const p = await step(target, rate, items, () => measure(target, `${target.base}/predict`, bodies, load(rate, stepS), []))
          const point = { ...(against ? { side } : {}), ...p, ...(sizes ? { sizes } : {}) }
          done.push(point)
          results.points.push(point)
          process.stdout.write(`${JSON.stringify(point)}\n`)
        }
      }
      return done
    }
    for (const rate of rates) {
      const done = await stepAll(rate, 100, w100)
      // Past saturation every further step only measures timeouts.
      if (done.every((p) => p.errors > 0.01 * rate * stepS)) break
    }
    await stepAll(50, 500, w500)
    // Request sizes mixed (--mixed-rate N req/s; 0 skips): the scorer's cost has a fixed part per
    // call, which a queue of small requests shows (src/scoring/call-cost.ts).
    const mixedRate = num(args, 'mixed-rate', 0)
    if (mixedRate > 0) {
      const wMixed = join(SCRATCH, 'hit-path-mixed.jsonl')
      workload(wMixed, pool, MIXED_SIZES, 2000, 17)
      const mean = Math.round(MIXED_SIZES.reduce((a, b) => a + b, 0) / MIXED_SIZES.length)
      await stepAll(mixedRate, mean, wMixed, MIXED_SIZES)
    }
    results.rssMiB = memory(servers[0]?.s.child.pid ?? 0)?.rssMiB
    if (against) results.rssMiBAgainst = memory(servers[1]?.s.child.pid ?? 0)?.rssMiB
    for (const { s } of servers) await s.child.stop(30_000)
    const prof = existsSync(profDir) ? latestProfile(profDir) : undefined
    if (prof) results.profile = summarizeProfile(prof, 25)
  } finally {
    await stopAll()
  }
  mkdirSync('bench/results', { recursive: true })
  const out = join('bench/results', `hit-path-${label}`)
  if (results.against) results.summary = abSummary(results.points)
  writeFileSync(`${out}.json`, `${JSON.stringify(results, null, 2)}\n`)
  const rows = results.points.map((p) => `| ${p.side ?? ''} | ${p.items} | ${p.rate} | ${p.throughput} | ${p.p50} | ${p.p99} | ${p.errors} ${JSON.stringify(p.statusCounts)} ${JSON.stringify(p.shedByReason)} | ${p.cpuMsPerRequest} | ${p.mainCpuMsPerRequest} | ${p.driverCores} | ${p.otherCores} | ${p.loadAverage} |`)
  writeFileSync(`${out}.md`, [`# Hit path: ${label} (${results.startedAt})`, '', `env: \`${JSON.stringify(env)}\`, RSS at end ${results.rssMiB} MiB`, '',
    ...(results.against ? [`b = ${results.against}; medians of each side's steps:`, '', ...(results.summary ?? []).map((l) => `- ${l}`), ''] : []),
    '| side | items | rate | done/s | p50 ms | p99 ms | errors (statuses) (shed by reason) | server CPU ms/req | main-thread CPU ms/req | driver cores | other cores | load avg |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|', ...rows, ''].join('\n'))
  process.stdout.write(`wrote ${out}.json and .md\n`)
}

await main()
