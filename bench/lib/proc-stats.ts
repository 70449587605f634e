import { readFileSync, readdirSync } from 'node:fs'
import { execFileSync } from 'node:child_process'

// CPU and memory of a process (all its threads) from /proc, so every participant of a run
// (server, load driver, origin, redis, peer) can be accounted for on the shared 2-core machine.

const CLK_TCK = (() => {
  try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch { return 100 }
})()

export interface CpuSample {
  readonly at: number
  /** user + system CPU seconds since the process started. */
  readonly cpuSeconds: number
}

export function cpuSample(pid: number): CpuSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may contain spaces) start at state = field 3.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const utime = Number(rest[11])
    const stime = Number(rest[12])
    return { at: performance.now(), cpuSeconds: (utime + stime) / CLK_TCK }
  } catch {
    return undefined
  }
}

/** Resident set size and its peak (VmHWM), in MiB. */
export function memory(pid: number): { rssMiB: number; rssAnonMiB: number; rssFileMiB: number; peakMiB: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const mib = (name: string): number => Math.round(Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) / 102.4) / 10
    return { rssMiB: mib('VmRSS'), rssAnonMiB: mib('RssAnon'), rssFileMiB: mib('RssFile'), peakMiB: mib('VmHWM') }
  } catch {
    return undefined
  }
}

/** Cores used between two samples (1.0 = one core fully busy). */
export function coresUsed(a: CpuSample | undefined, b: CpuSample | undefined): number {
  if (!a || !b || b.at <= a.at) return Number.NaN
  return Math.round(((b.cpuSeconds - a.cpuSeconds) / ((b.at - a.at) / 1000)) * 1000) / 1000
}

/** Samples the RSS of `pid` every `everyMs` until stopped; returns the largest value seen. */
export function watchRss(pid: number, everyMs = 500): { stop(): number } {
  let max = 0
  const take = (): void => { const m = memory(pid); if (m && m.rssMiB > max) max = m.rssMiB }
  take()
  const t = setInterval(take, everyMs)
  return { stop: () => { clearInterval(t); take(); return max } }
}

/** Busy CPU seconds of the whole machine (all processes, ours and everyone else's), from /proc/stat. */
export function machineSample(): CpuSample | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? ''
    const v = line.trim().split(/\s+/).slice(1).map(Number)
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0)
    const idle = (v[3] ?? 0) + (v[4] ?? 0)
    return { at: performance.now(), cpuSeconds: (total - idle) / CLK_TCK }
  } catch {
    return undefined
  }
}

export function loadAverage(): number {
  try { return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]) } catch { return Number.NaN }
}

/** CPU seconds of every thread of `pid`, by thread id (Linux keeps per-thread counters under task/). */
export function threadCpu(pid: number): Map<number, number> {
  const out = new Map<number, number>()
  let tids: string[] = []
  try { tids = readdirSync(`/proc/${pid}/task`) } catch { return out }
  for (const t of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8')
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      out.set(Number(t), (Number(rest[11]) + Number(rest[12])) / CLK_TCK)
    } catch { /* thread ended */ }
  }
  return out
}

/** CPU of the main thread of `pid` (thread id = pid). */
export function mainThreadSample(pid: number): CpuSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8')
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { at: performance.now(), cpuSeconds: (Number(rest[11]) + Number(rest[12])) / CLK_TCK }
  } catch {
    return undefined
  }
}
