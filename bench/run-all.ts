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
// Flags: --only <ids>  --scale <factor for durations, default 1>  --keep-profiles  --results <dir>
//        --max-minutes <stop starting new scenarios after this, default 25>

const RESULTS = 'bench/results'

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const only = (args.get('only') ?? '1,2,3,4,5,6,7,8').split(',').map((s) => Number(s.trim())).filter((n) => SCENARIOS[n])
  const resultsDir = str(args, 'results', RESULTS)
  const maxMinutes = num(args, 'max-minutes', 25)
  mkdirSync(resultsDir, { recursive: true })
  const modelDir = 'models/ctr-synth'
  if (!existsSync(join(modelDir, 'READY'))) throw new Error(`${modelDir}/READY is missing: build the bundle first (training/build.py)`)
  const workDir = mkdtempSync(join(tmpdir(), 'ctrbench-'))
  const keepProfiles = args.get('keep-profiles') === 'true'
  const t0 = performance.now()
  const log = (msg: string): void => { process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`) }
  const cleanup = async (): Promise<void> => { await stopAll(); rmSync(workDir, { recursive: true, force: true }) }
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))

  try {
    log(`scenarios ${only.join(',')}; work files in ${workDir}`)
    const redis = await startRedis()
    const origin = await startOrigin('fast')
    const ctx: RunContext = {
      sample: loadSample(), manifest: JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8')) as Manifest,
      redis, origin, workDir, profileDir: keepProfiles ? join(resultsDir, 'profiles') : join(workDir, 'profiles'),
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
  } finally {
    await cleanup()
  }
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`
  const md = writeSummary(resultsDir, buildSummary(loadResults(resultsDir), machine))
  process.stdout.write(md)
  try {
    execFileSync('python3', ['bench/plot.py', resultsDir], { stdio: 'inherit', timeout: 120_000 })
  } catch (err) {
    log(`plot failed: ${String(err)}`)
  }
  if (updateReadme('README.md', md)) log('README.md Benchmarks table updated')
  log(`total ${((performance.now() - t0) / 60_000).toFixed(1)} min`)
}

await main()
