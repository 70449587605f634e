import { writeFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { Pool } from 'undici'
import autocannon from 'autocannon'
import { num, parseArgs, str } from './lib/args.ts'
import { readLines } from '../support/jsonl.ts'
import { type LatencySummary, summarize } from './lib/percentiles.ts'

// The load driver, run as its own process. Default mode `open`: a fixed arrival rate in the style
// of wrk2 — request i is due at t0 + i/rate whatever happened before, and its latency is measured
// from that due time, so a stalled server is charged for the requests it delayed (no coordinated
// omission). Mode `closed`: one request after another on `connections` connections (service time,
// for the no-cache scenario). Mode `autocannon`: autocannon with `overallRate`, kept as a cross-check
// (its limiter sends each connection's per-second quota in a burst at the start of every second,
// and autocannon 8's correction uses an expected interval of ceil(1/rate) = 1 ms; see the README).

export interface SourceCounts { [modality: string]: Record<string, number> }

export interface DriverResult {
  mode: 'open' | 'closed' | 'autocannon'
  targetRate: number
  durationS: number
  sent: number
  completed: number
  ok: number
  errors: number
  statusCounts: Record<string, number>
  /** Completed 2xx per second over the measured window. */
  throughput: number
  /** Due time → last byte (open loop), or send → last byte (closed loop), 2xx only, ms. */
  latency: LatencySummary
  /** Send → last byte, ms (what a closed-loop tool would report). */
  serviceTime: LatencySummary
  sampledResponses: number
  sources: SourceCounts
  serverTiming: Record<string, number>
  maxInFlight: number
  /**
   * Share of requests sent that failed or answered 2xx after the deadline (`lateAfterMs` from the
   * due time, default 200 ms: the default budget); the issue-10 target is ≤ 0.1 %.
   */
  lateOrFailed: { readonly afterMs: number; readonly late: number; readonly failed: number; readonly share: number }
  /**
   * Where the late 2xx answers spent their time (means over them, ms): `sendLag` due → sent (the
   * driver itself behind), `outside` sent → last byte minus the server's `intake` + `total` (socket
   * queues and event-loop stalls before the request was seen or after it was answered), and the
   * server's own `timing_ms` stages. Absent when nothing was late or the mode has no per-request data.
   */
  lateBreakdown?: LateBreakdown
  /** Requests without a 2xx by the second of the run they were due in (open loop only). */
  failedBySecond?: Record<string, number>
}

export interface LateBreakdown {
  readonly count: number; readonly sendLag: number; readonly service: number; readonly outside: number; readonly server: Record<string, number>
  /** Late answers by the second of the run they were due in (clustered: a stall; spread: a steady tail). */
  readonly bySecond: Record<string, number>
}

interface PredictResponseShape {
  predictions?: Array<{ sources?: Record<string, string> }>
  timing_ms?: Record<string, number>
}

class Sampler {
  readonly sources: SourceCounts = {}
  readonly timing: Record<string, number> = {}
  n = 0
  add(text: string): void {
    const r = JSON.parse(text) as PredictResponseShape
    this.n++
    for (const p of r.predictions ?? []) {
      for (const [modality, source] of Object.entries(p.sources ?? {})) {
        const m = (this.sources[modality] ??= {})
        m[source] = (m[source] ?? 0) + 1
      }
    }
    for (const [k, v] of Object.entries(r.timing_ms ?? {})) this.timing[k] = (this.timing[k] ?? 0) + v
  }
  meanTiming(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.timing).map(([k, v]) => [k, Math.round((v / Math.max(1, this.n)) * 1000) / 1000]))
  }
}

interface Opts {
  url: string
  bodies: Buffer[]
  rate: number
  durationS: number
  amount: number
  connections: number
  sampleEvery: number
  timeoutMs: number
  maxInFlight: number
  lateAfterMs?: number
  /** Connect and collect garbage before the clock starts (`settle`; `BENCH_DRIVER_SETTLE=0` turns it off). */
  settle?: boolean
}

async function runOpenOrClosed(mode: 'open' | 'closed', o: Opts): Promise<DriverResult> {
  const u = new URL(o.url)
  const pool = new Pool(u.origin, { connections: o.connections, pipelining: 1, keepAliveTimeout: 30_000, headersTimeout: o.timeoutMs, bodyTimeout: o.timeoutMs })
  const latencies: number[] = []
  const service: number[] = []
  const statusCounts: Record<string, number> = {}
  const sampler = new Sampler()
  const late = new LateRecorder()
  const lateAfterMs = o.lateAfterMs ?? 200
  let sent = 0
  let completed = 0
  let ok = 0
  let errors = 0
  let inFlight = 0
  let maxInFlight = 0
  const total = mode === 'open' ? Math.floor(o.rate * o.durationS) : o.amount
  const interval = mode === 'open' ? 1000 / o.rate : 0

  /** The second of the run a request was due in. */
  const secondOf = (due: number): number => Math.floor((due - t0) / 1000)
  const failedBySecond: Record<string, number> = {}
  const failedAt = (due: number): void => {
    if (mode !== 'open') return
    const s = secondOf(due)
    failedBySecond[s] = (failedBySecond[s] ?? 0) + 1
  }
  const one = async (i: number, due: number): Promise<void> => {
    const body = o.bodies[i % o.bodies.length] as Buffer
    const sentAt = performance.now()
    inFlight++
    if (inFlight > maxInFlight) maxInFlight = inFlight
    try {
      // The timeout runs from the send, queueing in the pool included: a stuck target cannot hold the run.
      const res = await pool.request({ path: u.pathname, method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(o.timeoutMs) })
      const sample = res.statusCode === 200 && i % o.sampleEvery === 0
      const text = sample ? await res.body.text() : undefined
      const bytes = sample ? undefined : await res.body.arrayBuffer()
      const done = performance.now()
      statusCounts[res.statusCode] = (statusCounts[res.statusCode] ?? 0) + 1
      if (res.statusCode >= 200 && res.statusCode < 300) {
        ok++
        latencies.push(done - due)
        service.push(done - sentAt)
        if (done - due > lateAfterMs) late.add(secondOf(due), sentAt - due, done - sentAt, text ?? tailText(bytes))
      } else { errors++; failedAt(due) }
      if (text !== undefined) sampler.add(text)
    } catch (err) {
      errors++
      failedAt(due)
      const code = err instanceof Error ? ((err as { code?: string }).code ?? err.name) : 'error'
      statusCounts[code] = (statusCounts[code] ?? 0) + 1
    } finally {
      inFlight--
      completed++
    }
  }

  if (o.settle) await settle(pool, o.connections)
  const t0 = performance.now()
  const pending = new Set<Promise<void>>()
  if (mode === 'open') {
    // Bounded in count (total) and time (durationS + drain timeout).
    while (sent < total) {
      const now = performance.now()
      const due = t0 + sent * interval
      if (now < due) { await new Promise((r) => setTimeout(r, Math.min(due - now, 50))); continue }
      if (inFlight >= o.maxInFlight) {
        // The server is hopelessly behind: count the request as failed rather than queue without bound.
        errors++
        statusCounts.overflow = (statusCounts.overflow ?? 0) + 1
        sent++
        completed++
        continue
      }
      const p = one(sent, due)
      pending.add(p)
      void p.finally(() => pending.delete(p))
      sent++
    }
  } else {
    const deadline = t0 + o.durationS * 1000
    const worker = async (): Promise<void> => {
      while (sent < total && performance.now() < deadline) {
        const i = sent++
        await one(i, performance.now())
      }
    }
    await Promise.all(Array.from({ length: o.connections }, () => worker()))
  }
  const drainUntil = performance.now() + o.timeoutMs + 1000
  while (pending.size > 0 && performance.now() < drainUntil) await Promise.race([...pending, new Promise((r) => setTimeout(r, 100))])
  const elapsed = (performance.now() - t0) / 1000
  if (pending.size > 0) statusCounts.unfinished = pending.size
  errors += pending.size
  await pool.destroy().catch(() => undefined)
  return {
    mode, targetRate: o.rate, durationS: Math.round(elapsed * 100) / 100, sent, completed, ok, errors, statusCounts,
    throughput: Math.round((ok / elapsed) * 10) / 10,
    latency: summarize(latencies), serviceTime: summarize(service),
    sampledResponses: sampler.n, sources: sampler.sources, serverTiming: sampler.meanTiming(), maxInFlight,
    // Failed = sent without a 2xx: `errors` can count a request twice (timed out in the drain, then aborted).
    lateOrFailed: lateOrFailed(latencies, sent - ok, sent, lateAfterMs),
    lateBreakdown: late.summary(),
    ...(Object.keys(failedBySecond).length > 0 ? { failedBySecond } : {}),
  }
}

/**
 * What a warm client has before its first measured request, so that the driver's own start-up is
 * not charged to the server (wrk and wrk2 likewise connect before they measure): its connections,
 * opened by one GET /healthz each (not the measured route: the target's request path stays cold),
 * and a heap without the garbage of reading the bodies (a full GC when the driver runs with
 * --expose-gc, then a short idle pause for V8's own background work).
 */
async function settle(pool: Pool, connections: number): Promise<void> {
  await Promise.all(Array.from({ length: connections }, async () => {
    const res = await pool.request({ path: '/healthz', method: 'GET', signal: AbortSignal.timeout(10_000) }).catch(() => undefined)
    await res?.body.dump().catch(() => undefined)
  }))
  ;(globalThis as { gc?: () => void }).gc?.()
  await new Promise((r) => setTimeout(r, 500))
}

/** The last bytes of a response as text: `timing_ms` is written last. */
function tailText(bytes: ArrayBuffer | undefined): string {
  if (bytes === undefined) return ''
  return Buffer.from(bytes, Math.max(0, bytes.byteLength - 512)).toString('utf8')
}

class LateRecorder {
  private n = 0
  private sendLag = 0
  private service = 0
  private outside = 0
  private readonly server: Record<string, number> = {}
  private readonly bySecond: Record<string, number> = {}
  add(second: number, sendLagMs: number, serviceMs: number, text: string): void {
    this.bySecond[second] = (this.bySecond[second] ?? 0) + 1
    const m = /"timing_ms":(\{[^}]*\})\}\s*$/.exec(text)
    const timing = m ? (JSON.parse(m[1] as string) as Record<string, number>) : {}
    this.n++
    this.sendLag += sendLagMs
    this.service += serviceMs
    this.outside += serviceMs - (timing.intake ?? 0) - (timing.total ?? 0)
    for (const [k, v] of Object.entries(timing)) this.server[k] = (this.server[k] ?? 0) + v
  }
  summary(): LateBreakdown | undefined {
    if (this.n === 0) return undefined
    const mean = (x: number): number => Math.round((x / this.n) * 10) / 10
    return {
      count: this.n, sendLag: mean(this.sendLag), service: mean(this.service), outside: mean(this.outside),
      server: Object.fromEntries(Object.entries(this.server).map(([k, v]) => [k, mean(v)])), bySecond: this.bySecond,
    }
  }
}

function lateOrFailed(latencies: readonly number[], failed: number, sent: number, afterMs: number): DriverResult['lateOrFailed'] {
  const late = latencies.filter((ms) => ms > afterMs).length
  return { afterMs, late, failed, share: sent > 0 ? Math.round(((late + failed) / sent) * 1e6) / 1e6 : Number.NaN }
}

async function runAutocannon(o: Opts): Promise<DriverResult> {
  let i = 0
  const sampler = new Sampler()
  const result = await autocannon({
    url: o.url,
    connections: o.connections,
    overallRate: o.rate,
    duration: o.durationS,
    timeout: Math.ceil(o.timeoutMs / 1000),
    headers: { 'content-type': 'application/json' },
    requests: [{
      method: 'POST',
      path: new URL(o.url).pathname,
      setupRequest: (req) => ({ ...req, body: o.bodies[i++ % o.bodies.length] as Buffer }),
      onResponse: (status, body) => { if (status === 200 && i % o.sampleEvery === 0) sampler.add(body) },
    }],
  })
  const l = result.latency
  const lat: LatencySummary = { count: result.requests.total, mean: l.average, p50: l.p50, p90: l.p90, p95: Number.NaN, p99: l.p99, p999: l.p99_9, max: l.max }
  return {
    mode: 'autocannon', targetRate: o.rate, durationS: result.duration, sent: result.requests.sent, completed: result.requests.total,
    ok: result['2xx'], errors: result.errors + result.non2xx, statusCounts: { '2xx': result['2xx'], non2xx: result.non2xx, timeouts: result.timeouts },
    throughput: Math.round((result['2xx'] / result.duration) * 10) / 10, latency: lat, serviceTime: lat,
    sampledResponses: sampler.n, sources: sampler.sources, serverTiming: sampler.meanTiming(), maxInFlight: o.connections,
    // autocannon gives no per-request latencies: only its failures are counted here.
    lateOrFailed: { afterMs: o.lateAfterMs ?? 200, late: Number.NaN, failed: result.errors + result.non2xx, share: Number.NaN },
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const mode = str(args, 'mode', 'open')
  if (mode !== 'open' && mode !== 'closed' && mode !== 'autocannon') throw new Error('--mode must be open, closed or autocannon')
  const bodies = readLines(str(args, 'bodies')).map((l) => Buffer.from(l))
  if (bodies.length === 0) throw new Error('--bodies: no request bodies')
  const o: Opts = {
    url: str(args, 'url'), bodies, rate: num(args, 'rate', 200), durationS: num(args, 'duration', 20),
    amount: num(args, 'amount', 1000), connections: num(args, 'connections', 64), sampleEvery: num(args, 'sample-every', 10),
    timeoutMs: num(args, 'timeout-ms', 10_000), maxInFlight: num(args, 'max-in-flight', 2000),
    settle: process.env.BENCH_DRIVER_SETTLE !== '0',
  }
  const host = new URL(o.url).hostname
  if (host !== '127.0.0.1' && host !== 'localhost' && host !== '[::1]') throw new Error(`refusing to send load to ${host}: loopback only`)
  const result = mode === 'autocannon' ? await runAutocannon(o) : await runOpenOrClosed(mode, o)
  const out = args.get('out')
  if (out) writeFileSync(out, JSON.stringify(result, null, 2))
  else process.stdout.write(`${JSON.stringify(result)}\n`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main()
