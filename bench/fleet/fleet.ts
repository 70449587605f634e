// The fleet under test: ctrserve processes on one Redis Cluster, a rotation a load balancer would
// keep (instances being restarted or frozen are out of it), and per-incarnation job counters.
import { setTimeout as sleep } from 'node:timers/promises'
import { startServerProcess, type ServerProcess } from '../../support/server-process.ts'
import { type MetricMap, scrape, sumBy } from '../lib/metrics.ts'

export interface Instance {
  readonly slot: number
  readonly port: number
  proc: ServerProcess
  /** The bundle it runs: 'A' (models/ctr-synth) or 'B' (the changed image encoder). */
  bundle: 'A' | 'B'
  inRotation: boolean
  /** Counts the processes started on this slot; counters restart with each. */
  incarnation: number
}

const OUTCOMES = ['queued', 'deduplicated', 'negative', 'dropped', 'unknown', 'deferred', 'expired', 'done', 'retried', 'failed'] as const
export type Outcome = (typeof OUTCOMES)[number]
export type JobCounts = Record<Outcome, number>

export function emptyCounts(): JobCounts {
  return Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as JobCounts
}

export class Fleet {
  readonly instances: Instance[] = []
  /** Last scraped job counters per process (`slot#incarnation`): a killed process keeps its last scrape. */
  readonly lastCounts = new Map<string, JobCounts>()
  /** Processes replaced by a restart: their output holds their part of the per-key trace. */
  readonly retired: ServerProcess[] = []
  lastDepth = 0
  #next = 0
  #timer: NodeJS.Timeout | undefined

  constructor(private readonly envFor: (bundle: 'A' | 'B') => Record<string, string>) {}

  async start(count: number, ports: readonly number[]): Promise<void> {
    for (let slot = 0; slot < count; slot++) {
      const port = ports[slot] as number
      const proc = await startServerProcess(this.envFor('A'), port)
      this.instances.push({ slot, port, proc, bundle: 'A', inRotation: true, incarnation: 0 })
    }
    this.#timer = setInterval(() => void this.scrapeAll(), 1000)
  }

  /** The next instance in rotation (round robin), as a load balancer would pick. */
  pick(): Instance {
    const live = this.instances.filter((i) => i.inRotation)
    if (live.length === 0) throw new Error('no instance in rotation')
    return live[this.#next++ % live.length] as Instance
  }

  /** Scrapes `which` (default: those in rotation; a frozen process would hang the scrape). */
  async scrapeAll(which: readonly Instance[] = this.instances.filter((i) => i.inRotation)): Promise<void> {
    await Promise.all(which.map(async (inst) => {
      let m: MetricMap
      try {
        m = await scrape(inst.proc.url)
      } catch {
        return
      }
      const counts = emptyCounts()
      for (const [outcome, v] of Object.entries(sumBy(m, 'ctrserve_embedding_jobs_total', 'outcome'))) {
        if (outcome in counts) counts[outcome as Outcome] = v
      }
      this.lastCounts.set(`${inst.slot}#${inst.incarnation}`, counts)
      const depth = Object.values(sumBy(m, 'ctrserve_queue_depth', undefined))[0]
      if (depth !== undefined) this.lastDepth = depth
    }))
  }

  totals(): JobCounts {
    const t = emptyCounts()
    for (const c of this.lastCounts.values()) for (const o of OUTCOMES) t[o] += c[o]
    return t
  }

  /** Out of rotation, SIGTERM (graceful) or SIGKILL, then a new process on the same port with `bundle`. */
  async restart(inst: Instance, signal: 'SIGTERM' | 'SIGKILL', bundle: 'A' | 'B'): Promise<{ downMs: number }> {
    inst.inRotation = false
    await sleep(200) // requests already sent to it finish (a balancer drains the same way)
    await this.scrapeAll([inst]) // out of rotation now, but still alive: its last counts
    const t0 = performance.now()
    inst.proc.kill(signal)
    await inst.proc.exited()
    this.retired.push(inst.proc)
    inst.proc = await startServerProcess(this.envFor(bundle), inst.port)
    inst.bundle = bundle
    inst.incarnation++
    await this.readmit(inst)
    return { downMs: Math.round(performance.now() - t0) }
  }

  /** Back in rotation once /readyz answers 200, as a balancer's health check would decide. */
  async readmit(inst: Instance, timeoutMs = 120_000): Promise<number> {
    const t0 = performance.now()
    while (performance.now() - t0 < timeoutMs) {
      const status = await fetch(`${inst.proc.url}/readyz`, { signal: AbortSignal.timeout(2000) }).then((r) => r.status, () => 0)
      if (status === 200) break
      await sleep(250)
    }
    inst.inRotation = true
    return Math.round(performance.now() - t0)
  }

  /** Every process's output, retired ones included (complete once they exited). */
  outputs(): string[][] {
    return [...this.retired, ...this.instances.map((i) => i.proc)].map((p) => p.output)
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    await this.scrapeAll()
    for (const inst of this.instances) {
      inst.proc.child.kill('SIGCONT')
      inst.proc.kill('SIGTERM')
    }
    await Promise.all(this.instances.map((i) => Promise.race([i.proc.exited(), sleep(30_000)])))
    for (const inst of this.instances) inst.proc.kill('SIGKILL')
  }
}
