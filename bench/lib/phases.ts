import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CeilingResult } from '../ceiling.ts'
import { spawnChild } from './children.ts'
import { type RunContext, type SweepPoint, infra } from './context.ts'
import { type Target, measure } from './measure.ts'

// Multi-step phases: the open-loop rate sweep (throughput–latency curve) and the ceiling child.

export const SWEEP_P99_LIMIT_MS = 50

async function step(ctx: RunContext, target: Target, bodies: string, rate: number, stepS: number): Promise<{ point: SweepPoint; over: boolean }> {
  ctx.log(`  sweep ${target.kind}: ${rate} req/s for ${stepS} s`)
  const m = await measure(target, `${target.base}/predict`, bodies, { mode: 'open', rate, durationS: stepS, connections: 64, sampleEvery: 50, timeoutMs: 5000 }, infra(ctx))
  const d = m.driver
  const point: SweepPoint = {
    rate, throughput: d.throughput, p50: d.latency.p50, p99: d.latency.p99, p999: d.latency.p999, errors: d.errors,
    serverCores: m.cpu.server ?? Number.NaN, driverCores: m.cpu.driver ?? Number.NaN, otherCores: m.cpu.other ?? Number.NaN,
  }
  return { point, over: !(d.latency.p99 <= SWEEP_P99_LIMIT_MS) || d.errors > 0.01 * d.sent }
}

/**
 * Open-loop steps at increasing rates, the targets interleaved step by step (so they see the same
 * machine noise); a target stops after its first step whose p99 exceeds the limit or that fails > 1%.
 */
export async function sweep(ctx: RunContext, targets: ReadonlyArray<{ name: string; target: Target }>, bodies: string, rates: readonly number[], stepS: number): Promise<Record<string, SweepPoint[]>> {
  const out: Record<string, SweepPoint[]> = {}
  const active = new Set(targets.map((t) => t.name))
  for (const rate of rates) {
    for (const t of targets) {
      if (!active.has(t.name)) continue
      const { point, over } = await step(ctx, t.target, bodies, rate, stepS)
      ;(out[t.name] ??= []).push(point)
      if (over) active.delete(t.name)
    }
    if (active.size === 0) break
  }
  return out
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
