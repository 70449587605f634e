import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startImageOrigin } from '../../support/image-origin.ts'
import { RESULTS_DIR, SAMPLE_DIR, ctrserve, machine, mustSucceed, writeRows } from '../../support/cli.ts'

// `ctrserve score` on cached embeddings: rows/s and peak RSS at 100k and 1M rows.
//   npx tsx bench/cli/score-rss.ts [--sizes 100000,1000000] [--workers 1,2] [--max-seconds 280]
// The sample's 1500 items are warmed into an L1 snapshot first (ctrserve warm, local origin); the
// rows (generated in a temp dir, not committed) cycle through them, 50 rows per context, so every
// embedding is an L1 hit and the figures are those of the scoring path itself. Peak RSS is each
// process's getrusage maxrss (parent + workers summed when --workers > 1). Runs that would start
// after --max-seconds are skipped and reported as such.

interface ScoreSummaryJson {
  scored: number; seconds: number; wallSeconds: number; rowsPerSecond: number; bodies: number
  peakRssMb: number; peakRssTotalMb: number; workers: number; hitRate: { image: number; text: number }
}

interface Result {
  rows: number; workers: number; rowsPerSecond: number; seconds: number; wallSeconds: number
  peakRssTotalMb: number; peakRssParentMb: number; headRuns: number; hitRate: { image: number; text: number }
  command: string; inputMiB: number; outputMiB: number
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    sizes: { type: 'string', default: '100000,1000000' }, workers: { type: 'string', default: '1,2' },
    'max-seconds': { type: 'string', default: '280' },
  } })
  const sizes = values.sizes.split(',').map(Number)
  const workerCounts = values.workers.split(',').map(Number)
  const maxSeconds = Number(values['max-seconds'])
  const t0 = performance.now()
  const load0 = loadavg()[0] ?? 0
  const dir = mkdtempSync(join(tmpdir(), 'ctrserve-bench-score-'))
  const origin = await startImageOrigin(SAMPLE_DIR)
  const results: Result[] = []
  const skipped: string[] = []
  try {
    const snapshot = join(dir, 'l1.snap')
    const warm = await ctrserve(['warm', '--input', join(SAMPLE_DIR, 'items.jsonl'), '--snapshot', snapshot, '--base-url', origin.baseUrl,
      '--progress-interval', '3600'])
    mustSucceed('warm', warm)
    process.stderr.write(warm.stdout)
    for (const n of sizes) {
      const rows = join(dir, `rows-${n}.jsonl`)
      await writeRows(rows, n)
      for (const w of workerCounts) {
        const elapsed = (performance.now() - t0) / 1000
        if (elapsed > maxSeconds) { skipped.push(`${n} rows × ${w} workers (time bound reached at ${elapsed.toFixed(0)} s)`); continue }
        const out = join(dir, 'preds.jsonl')
        const args = ['score', '--input', rows, '--output', out, '--snapshot', snapshot, '--base-url', origin.baseUrl,
          '--workers', String(w), '--summary-json', join(dir, 's.json'), '--progress-interval', '3600']
        const r = await ctrserve(args)
        mustSucceed('score', r)
        process.stderr.write(r.stdout)
        const s = JSON.parse(readFileSync(join(dir, 's.json'), 'utf8')) as ScoreSummaryJson
        results.push({
          rows: s.scored, workers: s.workers, rowsPerSecond: Math.round(s.rowsPerSecond), seconds: +s.seconds.toFixed(2),
          wallSeconds: +s.wallSeconds.toFixed(2), peakRssTotalMb: Math.round(s.peakRssTotalMb), peakRssParentMb: Math.round(s.peakRssMb),
          headRuns: s.bodies, hitRate: s.hitRate, command: `ctrserve ${args.join(' ').replaceAll(dir, '$TMP').replace(origin.baseUrl, '$ORIGIN')}`,
          inputMiB: +(statSync(rows).size / 2 ** 20).toFixed(1), outputMiB: +(statSync(out).size / 2 ** 20).toFixed(1),
        })
        rmSync(out, { force: true })
      }
      rmSync(rows, { force: true })
    }
  } finally {
    await origin.close()
    rmSync(dir, { recursive: true, force: true })
  }
  const flat = workerCounts.map((w) => {
    const a = results.find((r) => r.workers === w && r.rows === sizes[0])
    const b = results.find((r) => r.workers === w && r.rows === sizes[sizes.length - 1])
    return a && b ? { workers: w, ratio: +(b.peakRssTotalMb / a.peakRssTotalMb).toFixed(3), withinTenPercent: b.peakRssTotalMb <= 1.1 * a.peakRssTotalMb } : undefined
  }).filter((x) => x !== undefined)
  const report = {
    bench: 'cli-score', date: new Date().toISOString(), machine: { ...machine(), loadavg1mAtStart: +load0.toFixed(2), loadavg1mAtEnd: +(loadavg()[0] ?? 0).toFixed(2) },
    results, rssLargestOverSmallest: flat, skipped, totalSeconds: +((performance.now() - t0) / 1000).toFixed(1),
  }
  mkdirSync(RESULTS_DIR, { recursive: true })
  writeFileSync(join(RESULTS_DIR, 'cli-score.json'), `${JSON.stringify(report, null, 2)}\n`)
  const md = [
    '# ctrserve score: throughput and peak RSS on cached embeddings',
    '',
    `${report.date}; ${String(report.machine.cpus)} CPUs (${String(report.machine.cpu)}), node ${process.version}; 1-min load average ${load0.toFixed(2)} at start, ${(loadavg()[0] ?? 0).toFixed(2)} at end (shared machine: other jobs were running).`,
    'Generated by `npx tsx bench/cli/score-rss.ts`. Rows cycle through the 1500 sample items, 50 rows per context; every embedding is an L1 hit (snapshot from `ctrserve warm`).',
    '',
    '| rows | processes | rows/s | scoring s | wall s (with start-up) | peak RSS MiB (all processes) | head runs | input MiB |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...results.map((r) => `| ${r.rows} | ${r.workers} | ${r.rowsPerSecond} | ${r.seconds} | ${r.wallSeconds} | ${r.peakRssTotalMb} | ${r.headRuns} | ${r.inputMiB} |`),
    '',
    ...flat.map((f) => `Peak RSS ${sizes[sizes.length - 1]} rows / ${sizes[0]} rows with ${f.workers} process(es): ${f.ratio} (${f.withinTenPercent ? 'flat within 10%' : 'NOT within 10%'}).`),
    ...(skipped.length > 0 ? ['', `Skipped: ${skipped.join('; ')}`] : []),
    '',
  ].join('\n')
  writeFileSync(join(RESULTS_DIR, 'cli-score.md'), md)
  process.stdout.write(md)
}

await main()
