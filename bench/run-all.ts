import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Manifest } from '../src/bundle/manifest.ts'
import { num, parseArgs, str } from './lib/args.ts'
import { stopAll } from './lib/children.ts'
import type { RunContext, ScenarioResult } from './lib/context.ts'
import { loadSample } from './lib/sample.ts'
import { startOrigin, startRedis } from './lib/services.ts'
import { buildSummary, loadResults, scenarioMarkdown, updateReadme, writeSummary } from './report.ts'
import { SCENARIOS } from './scenarios.ts'

// `npm run bench` — every scenario in bounded time; `tsx bench/run-all.ts --only 1,7` for a subset.
// Flags: --nice <n> (every child process at that niceness; negative needs root)
//        --only <ids>  --scale <factor for durations, default 1>  --results <dir>
//        --keep-profiles (server .cpuprofile files to <results>/profiles) or --profile-dir <dir>
//        --profile (servers under the V8 profiler: a profile section in each report; it slows the
//        server and lengthens its tail, so latency figures are taken without it)
//        --report-only (rebuild summary.md/json and the PNGs from the scenario files on disk)
//        --max-minutes <stop starting new scenarios after this, default 25>

const RESULTS = 'bench/results'

/** --report-only: rebuild summary and plots from the results on disk. */
class ReportOnly extends Error {}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const only = (args.get('only') ?? '1,2,3,4,5,6,7,8').split(',').map((s) => Number(s.trim())).filter((n) => SCENARIOS[n])
  const resultsDir = str(args, 'results', RESULTS)
  const maxMinutes = num(args, 'max-minutes', 25)
  const nice = args.get('nice')
  if (nice !== undefined) {
    if (!/^-?\d+$/.test(nice)) throw new Error('--nice takes an integer, e.g. -10 (needs root below 0)')
    process.env.BENCH_NICE = nice
  }
  let git = ''
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', 'src'], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).length
    git = `${head}${dirty ? ` + ${dirty} uncommitted file(s) in src/` : ''}`
  } catch { git = 'unknown' }
  mkdirSync(resultsDir, { recursive: true })
  const modelDir = 'models/ctr-synth'
  if (!existsSync(join(modelDir, 'READY'))) throw new Error(`${modelDir}/READY is missing: build the bundle first (training/build.py)`)
  const workDir = mkdtempSync(join(tmpdir(), 'ctrbench-'))
  const keepProfiles = args.get('keep-profiles') === 'true'
  // Servers run without the V8 profiler unless asked: it samples every thread of the server each
  // millisecond (one event-processor thread per isolate), and with it on, scenario 4's late-or-failed
  // share was 5.8–7.7 % against 1.3–1.5 % off (interleaved, bench/results/runs/s18-prof-ab-*).
  const profiled = args.get('profile') === 'true' || keepProfiles || args.has('profile-dir')
  const profileDir = !profiled ? undefined
    : args.get('profile-dir') ?? (keepProfiles ? join(resultsDir, 'profiles') : join(workDir, 'profiles'))
  const t0 = performance.now()
  const log = (msg: string): void => { process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`) }
  const cleanup = async (): Promise<void> => { await stopAll(); rmSync(workDir, { recursive: true, force: true }) }
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))

  const reportOnly = args.get('report-only') === 'true'
  try {
    if (reportOnly) throw new ReportOnly()
    log(`scenarios ${only.join(',')}; work files in ${workDir}`)
    const redis = await startRedis()
    const origin = await startOrigin('fast')
    const ctx: RunContext = {
      sample: loadSample(), manifest: JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8')) as Manifest,
      redis, origin, workDir, profileDir,
      scale: num(args, 'scale', 1), warmPrefix: `warm${Date.now()}`, seeded: false, log,
    }
    for (const id of only) {
      if ((performance.now() - t0) / 60_000 > maxMinutes) { log(`time limit (${maxMinutes} min) reached, skipping scenario ${id}`); continue }
      const run = SCENARIOS[id]
      if (!run) continue
      log(`scenario ${id}`)
      const started = performance.now()
      let r: ScenarioResult
      try {
        r = await run(ctx)
      } catch (err) {
        log(`scenario ${id} failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`)
        continue
      }
      r.seconds = Math.round((performance.now() - started) / 1000)
      const base = join(resultsDir, `scenario-${r.id}-${r.name}`)
      writeFileSync(`${base}.json`, JSON.stringify(r, null, 2))
      writeFileSync(`${base}.md`, scenarioMarkdown(r))
      const m = r.main?.driver
      log(`scenario ${id} done in ${r.seconds} s${m ? `: p50 ${m.latency.p50} p99 ${m.latency.p99} p99.9 ${m.latency.p999} ms, ${m.throughput} req/s, ${m.errors} errors` : ''}`)
    }
  } catch (err) {
    if (!(err instanceof ReportOnly)) throw err
  } finally {
    await cleanup()
  }
  if (reportOnly) {
    // Keep the source and niceness of the run that produced the results, not of this rebuild.
    const prev = join(resultsDir, 'summary.json')
    if (existsSync(prev)) {
      const p = JSON.parse(readFileSync(prev, 'utf8')) as { git?: string; nice?: string }
      if (p.git) git = p.git
      if (p.nice && nice === undefined) process.env.BENCH_NICE = p.nice
    }
  }
  const niceUsed = nice ?? (reportOnly ? process.env.BENCH_NICE : undefined)
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`
  const md = writeSummary(resultsDir, buildSummary(loadResults(resultsDir), machine, { git, ...(niceUsed ? { nice: niceUsed } : {}) }))
  process.stdout.write(md)
  try {
    execFileSync('python3', ['bench/plot.py', resultsDir], { stdio: 'inherit', timeout: 120_000 })
  } catch (err) {
    log(`plot failed: ${String(err)}`)
  }
  // Only the default results folder is "the latest table".
  if (resultsDir === RESULTS && updateReadme('README.md', md)) log('README.md Benchmarks table updated')
  log(`total ${((performance.now() - t0) / 60_000).toFixed(1)} min`)
}

await main()
