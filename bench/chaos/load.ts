// A fixed-rate (open-loop) load of POST /predict: one request every 1000/rate ms whether or not
// earlier ones have answered, latency measured from each request's due time, so a stalled server
// shows as latency rather than as fewer requests. Bounded by the duration and an in-flight cap.
import { summarize, type LatencySummary } from '../lib/percentiles.ts'

export interface PhaseStats {
  readonly phase: string
  readonly seconds: number
  sent: number
  /** Not sent because `maxInFlight` requests were already waiting. */
  skipped: number
  readonly statuses: Record<string, number>
  /** Connection refused / reset (no HTTP status at all). */
  connectionErrors: number
  fiveXx: number
  readonly sources: Record<string, number>
  readonly latencies: number[]
  /** ms from phase start to the first response with an L2 source (undefined: none). */
  firstL2Ms?: number
}

export interface PhaseSummary extends Omit<PhaseStats, 'latencies'> {
  readonly latency: LatencySummary
}

export interface Body { readonly items: ReadonlyArray<Record<string, unknown>>; readonly context?: object; readonly options?: object }

export interface LoadOptions {
  readonly url: () => string
  readonly rate: number
  readonly seconds: number
  readonly body: (i: number) => Body
  readonly maxInFlight?: number
  readonly timeoutMs?: number
  readonly onResponse?: (r: { status: number; sources: string[]; body: Body }) => void
}

export function newStats(phase: string, seconds: number): PhaseStats {
  return { phase, seconds, sent: 0, skipped: 0, statuses: {}, connectionErrors: 0, fiveXx: 0, sources: {}, latencies: [] }
}

export async function runLoad(stats: PhaseStats, o: LoadOptions): Promise<void> {
  const interval = 1000 / o.rate
  const start = performance.now()
  const total = Math.floor(o.rate * o.seconds)
  const pending = new Set<Promise<void>>()
  for (let i = 0; i < total; i++) {
    const due = start + i * interval
    const wait = due - performance.now()
    if (wait > 0) await new Promise((r) => setTimeout(r, wait))
    if (pending.size >= (o.maxInFlight ?? 400)) { stats.skipped++; continue }
    const body = o.body(i)
    const p = send(stats, o, body, due).finally(() => pending.delete(p))
    pending.add(p)
  }
  await Promise.all(pending)
}

async function send(stats: PhaseStats, o: LoadOptions, body: Body, due: number): Promise<void> {
  stats.sent++
  try {
    const res = await fetch(`${o.url()}/predict`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
      signal: AbortSignal.timeout(o.timeoutMs ?? 30_000),
    })
    const text = await res.text()
    stats.latencies.push(performance.now() - due)
    stats.statuses[res.status] = (stats.statuses[res.status] ?? 0) + 1
    if (res.status >= 500) stats.fiveXx++
    const sources: string[] = []
    if (res.status === 200) {
      const r = JSON.parse(text) as { predictions: Array<{ sources: { image: string; text: string } }> }
      for (const p of r.predictions) sources.push(p.sources.image, p.sources.text)
      for (const s of sources) stats.sources[s] = (stats.sources[s] ?? 0) + 1
    }
    o.onResponse?.({ status: res.status, sources, body })
  } catch {
    stats.connectionErrors++
  }
}

export function summarizePhase(s: PhaseStats): PhaseSummary {
  const { latencies, ...rest } = s
  return { ...rest, latency: summarize(latencies) }
}
