import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { DriverResult } from '../load-driver.ts'
import { httpOk, spawnChild, waitFor } from './children.ts'
import { type CacheFigures, cacheFigures, diff, scrape, sumBy } from './metrics.ts'
import { coresUsed, cpuSample, loadAverage, machineSample, mainThreadSample, memory, watchRss } from './proc-stats.ts'

// One measured load phase: the load driver in its own process against a target, with CPU of every
// participant and the target's RSS sampled around it, and cache figures diffed over the window.

export interface Participant { readonly role: string; readonly pid: number }

export interface LoadSpec {
  readonly mode: 'open' | 'closed' | 'autocannon'
  readonly rate: number
  readonly durationS: number
  readonly connections: number
  readonly amount?: number
  readonly sampleEvery?: number
  readonly timeoutMs?: number
}

export interface Measurement {
  readonly load: LoadSpec & { readonly bodies: string }
  readonly driver: DriverResult
  /**
   * Cores used during the phase, by role (1.0 = one core): server, driver, origin, redis, plus
   * `machine` (every process) and `other` (machine minus ours: the other work on the shared box).
   */
  readonly cpu: Record<string, number>
  /** 1-minute load average at the end of the phase. */
  readonly loadAverage: number
  readonly rss: { readonly endMiB: number; readonly maxMiB: number; readonly peakLifetimeMiB: number }
  /** From the target's /metrics (ctrserve) or /stats (peer), diffed over the phase. */
  readonly cache?: CacheFigures
  /** ctrserve: images embedded per second by background jobs while the load ran (jobs done). */
  readonly imagesEmbeddedPerS?: number
  /** ctrserve: requests shed with 503 OVERLOADED during the phase, by reason (ctrserve_shed_requests_total). */
  readonly shed?: Record<string, number>
}

export interface Target {
  readonly kind: 'ctrserve' | 'peer'
  readonly base: string
  readonly pid: number
}

interface PeerStats { l1_hit: number; l1_miss: number; l2_hit: number; l2_miss: number; jobs_done: number; jobs_failed: number; jobs_dropped: number; sources: Record<string, Record<string, number>> }

async function peerStats(base: string): Promise<PeerStats> {
  const r = await fetch(`${base}/stats`, { signal: AbortSignal.timeout(30_000) })
  return (await r.json()) as PeerStats
}

function peerFigures(a: PeerStats, b: PeerStats): CacheFigures {
  const r = (x: number, y: number): number => (y > 0 ? Math.round((x / y) * 10000) / 10000 : Number.NaN)
  const sources: Record<string, Record<string, number>> = {}
  let served = 0
  let oov = 0
  for (const m of ['image', 'text']) {
    const s: Record<string, number> = {}
    for (const [k, v] of Object.entries(b.sources[m] ?? {})) {
      s[k] = v - (a.sources[m]?.[k] ?? 0)
      if (k !== 'absent') served += s[k] ?? 0
      if (k === 'oov') oov += s[k] ?? 0
    }
    sources[m] = s
  }
  const l1h = b.l1_hit - a.l1_hit
  const l1m = b.l1_miss - a.l1_miss
  const l2h = b.l2_hit - a.l2_hit
  const l2m = b.l2_miss - a.l2_miss
  return {
    l1HitRate: r(l1h, l1h + l1m), l2HitRate: r(l2h, l2h + l2m), sources, oovRate: r(oov, served),
    jobs: { done: b.jobs_done - a.jobs_done, failed: b.jobs_failed - a.jobs_failed, dropped: b.jobs_dropped - a.jobs_dropped },
    fetchFailures: {},
  }
}

function imagesDone(d: Map<string, number>): number {
  return Object.values(sumBy(d, 'ctrserve_embedding_jobs_total', undefined, { modality: 'image', outcome: 'done' }))[0] ?? 0
}

export async function measure(target: Target, url: string, bodiesFile: string, load: LoadSpec, others: readonly Participant[]): Promise<Measurement> {
  const dir = mkdtempSync(join(tmpdir(), 'ctrbench-driver-'))
  const out = join(dir, 'result.json')
  try {
    const m0 = target.kind === 'ctrserve' ? await scrape(target.base) : undefined
    const p0 = target.kind === 'peer' ? await peerStats(target.base) : undefined
    const args = ['--expose-gc', '--import', 'tsx', 'bench/load-driver.ts', '--url', url, '--bodies', bodiesFile, '--mode', load.mode,
      '--rate', String(load.rate), '--duration', String(load.durationS), '--connections', String(load.connections),
      '--amount', String(load.amount ?? 1000), '--sample-every', String(load.sampleEvery ?? 10), '--timeout-ms', String(load.timeoutMs ?? 10_000), '--out', out]
    const all: Participant[] = [{ role: 'server', pid: target.pid }, ...others]
    const rss = watchRss(target.pid)
    const before = all.map((p) => cpuSample(p.pid))
    const mach0 = machineSample()
    const main0 = mainThreadSample(target.pid)
    const driver = spawnChild('load-driver', process.execPath, args)
    const d0 = cpuSample(driver.pid)
    let d1 = d0
    // The driver's CPU is read just before it exits (its /proc entry goes away afterwards).
    const poll = setInterval(() => { d1 = cpuSample(driver.pid) ?? d1 }, 250)
    const limit = setTimeout(() => void driver.stop(2000), (load.durationS + (load.timeoutMs ?? 10_000) / 1000 + 60) * 1000)
    const tLoad = performance.now()
    const code = await new Promise<number | null>((r) => driver.proc.once('exit', (c) => r(c)))
    clearTimeout(limit)
    clearInterval(poll)
    const imagesEmbeddedPerS = m0 ? imagesDone(diff(m0, await scrape(target.base))) / ((performance.now() - tLoad) / 1000) : undefined
    const after = all.map((p) => cpuSample(p.pid))
    // An overloaded target may still be working off requests the driver gave up on: let it settle
    // (bounded) before reading its counters and before the next phase starts.
    await waitFor('target settles', () => httpOk(`${target.base}/healthz`), 120_000, 500).catch(() => undefined)
    const mach1 = machineSample()
    const main1 = mainThreadSample(target.pid)
    const maxRss = rss.stop()
    if (code !== 0) throw new Error(`load driver exited with ${code}\n${driver.stderrTail()}`)
    const result = JSON.parse(readFileSync(out, 'utf8')) as DriverResult
    const cpu: Record<string, number> = { driver: coresUsed(d0, d1) }
    all.forEach((p, i) => { cpu[p.role] = coresUsed(before[i], after[i]) })
    cpu.machine = coresUsed(mach0, mach1)
    // Not a role of its own: the server's main thread (event loop), part of `server`.
    const serverMain = coresUsed(main0, main1)
    const ours = Object.entries(cpu).filter(([k]) => k !== 'machine' && k !== 'serverMainThread').reduce((a, [, v]) => a + (Number.isFinite(v) ? v : 0), 0)
    cpu.other = Math.max(0, Math.round(((cpu.machine ?? 0) - ours) * 1000) / 1000)
    cpu.serverMainThread = serverMain
    const mem = memory(target.pid)
    const d = target.kind === 'ctrserve' && m0 ? diff(m0, await scrape(target.base)) : undefined
    const cache = d ? cacheFigures(d) : p0 ? peerFigures(p0, await peerStats(target.base)) : undefined
    const shed = d ? sumBy(d, 'ctrserve_shed_requests_total', 'reason') : undefined
    return {
      load: { ...load, bodies: bodiesFile }, driver: result, cpu, loadAverage: loadAverage(),
      rss: { endMiB: mem?.rssMiB ?? Number.NaN, maxMiB: maxRss, peakLifetimeMiB: mem?.peakMiB ?? Number.NaN },
      ...(cache ? { cache } : {}),
      ...(imagesEmbeddedPerS !== undefined ? { imagesEmbeddedPerS: Math.round(imagesEmbeddedPerS * 10) / 10 } : {}),
      ...(shed ? { shed } : {}),
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
