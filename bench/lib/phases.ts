import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CeilingResult } from '../ceiling.ts'
import { spawnChild } from './children.ts'
import { type RunContext, type SweepPoint, infra } from './context.ts'
import { type Target, measure } from './measure.ts'

// Multi-step phases: the open-loop rate sweep (throughput–latency curve) and the ceiling child.

export const SWEEP_P99_LIMIT_MS = 50

/** Open-loop steps at increasing rates; stops after the first step whose p99 exceeds the limit or that fails > 1%. */
export async function sweep(ctx: RunContext, target: Target, bodies: string, rates: readonly number[], stepS: number): Promise<SweepPoint[]> {
  const points: SweepPoint[] = []
  for (const rate of rates) {
    ctx.log(`  sweep: ${rate} req/s for ${stepS} s`)
    const m = await measure(target, `${target.base}/predict`, bodies, { mode: 'open', rate, durationS: stepS, connections: 64, sampleEvery: 50, timeoutMs: 5000 }, infra(ctx))
    const d = m.driver
    points.push({
      rate, throughput: d.throughput, p50: d.latency.p50, p99: d.latency.p99, p999: d.latency.p999, errors: d.errors,
      serverCores: m.cpu.server ?? Number.NaN, driverCores: m.cpu.driver ?? Number.NaN,
    })
    if (!(d.latency.p99 <= SWEEP_P99_LIMIT_MS) || d.errors > 0.01 * d.sent) break
  }
  return points
}

/** Highest swept rate whose p99 ≤ limit with < 1% errors and throughput within 5% of the offered rate. */
export function maxRateWithin(points: readonly SweepPoint[] | undefined, limitMs: number): number {
  let best = 0
  for (const p of points ?? []) if (p.p99 <= limitMs && p.throughput >= 0.95 * p.rate && p.rate > best) best = p.rate
  return best
}

export async function measureCeilingInChild(ctx: RunContext, bodies: string, secondsToRun: number): Promise<CeilingResult> {
  const dir = mkdtempSync(join(tmpdir(), 'ctrbench-ceiling-'))
  try {
    const out = join(dir, 'ceiling.json')
    ctx.log(`  ceiling: ${secondsToRun} s in a child process`)
    const c = spawnChild('ceiling', process.execPath, ['--import', 'tsx', 'bench/ceiling.ts', '--bodies', bodies, '--seconds', String(secondsToRun), '--out', out])
    const t = setTimeout(() => void c.stop(2000), (secondsToRun + 60) * 1000)
    const code = await new Promise<number | null>((r) => c.proc.once('exit', (x) => r(x)))
    clearTimeout(t)
    if (code !== 0) throw new Error(`ceiling exited with ${code}\n${c.stderrTail()}`)
    return JSON.parse(readFileSync(out, 'utf8')) as CeilingResult
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
