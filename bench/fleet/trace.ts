// The fleet bench's per-key trace: every instance runs with LOG_LEVEL=debug, so the queue logs
// each key's enqueue outcome ('queue: enqueue', {key, outcome, why}) and each job done
// ('queue: job done', {key}). Read from every process's output at the end, it tells what became
// of each input that has no vector.

export interface KeyTrace {
  /** Enqueue outcomes in log order over every process: queued, deduplicated, deferred, dropped, … */
  readonly outcomes: Array<{ outcome: string; why?: string }>
  /** A consumer settled its job as done (vector confirmed in Redis when it did). */
  done: boolean
}

/** Parses pino JSON lines of every process's output (chunks may split lines). */
export function readTraces(outputs: ReadonlyArray<readonly string[]>): Map<string, KeyTrace> {
  const traces = new Map<string, KeyTrace>()
  const of = (key: string): KeyTrace => {
    let t = traces.get(key)
    if (!t) traces.set(key, t = { outcomes: [], done: false })
    return t
  }
  for (const output of outputs) {
    for (const line of output.join('').split('\n')) {
      if (!line.includes('"queue: ')) continue
      let o: { msg?: string; key?: string; outcome?: string; why?: string }
      try {
        o = JSON.parse(line) as typeof o
      } catch {
        continue
      }
      if (o.key === undefined) continue
      if (o.msg === 'queue: enqueue' && o.outcome) of(o.key).outcomes.push({ outcome: o.outcome, ...(o.why ? { why: o.why } : {}) })
      else if (o.msg === 'queue: job done') of(o.key).done = true
    }
  }
  return traces
}

/** What became of an input with no vector at the end. The first five are lost (see LOST). */
export type MissingClass =
  | 'done, vector missing' | 'acknowledged, then lost' | 'in the outbox when its process ended' | 'given up (dropped)' | 'given up (unknown)'
  | 'still a job' | 'negatively cached' | 'suppressed by the resend window' | 'throttled by admission (QUEUE_CLIENT_RATE or QUEUE_INSTANCE_RATE)' | 'never offered'
  | 'request refused (non-200), never offered' | 'request unanswered (connection error or timeout), never offered'

/**
 * Lost: the server took the input (its enqueue was acknowledged, or it was offered and not
 * suppressed) and after the drain it has no vector, no job and no negative marker.
 */
export const LOST: ReadonlySet<MissingClass> = new Set<MissingClass>([
  'done, vector missing', 'acknowledged, then lost', 'in the outbox when its process ended', 'given up (dropped)', 'given up (unknown)',
])

/** `httpStatus`: what the request that carried the input got (undefined: no answer). */
export function classify(where: 'queued' | 'negative' | 'nowhere', trace: KeyTrace | undefined, httpStatus?: number): MissingClass {
  if (where === 'queued') return 'still a job'
  if (where === 'negative') return 'negatively cached'
  if (!trace || trace.outcomes.length === 0) {
    if (trace?.done) return 'done, vector missing'
    if (httpStatus === undefined) return 'request unanswered (connection error or timeout), never offered'
    return httpStatus === 200 ? 'never offered' : 'request refused (non-200), never offered'
  }
  if (trace.done) return 'done, vector missing'
  const o = trace.outcomes
  if (o.some((x) => x.outcome === 'queued' || (x.outcome === 'deduplicated' && x.why === undefined))) return 'acknowledged, then lost'
  const last = o[o.length - 1]?.outcome
  if (last === 'dropped') return 'given up (dropped)'
  if (last === 'unknown') return 'given up (unknown)'
  if (last === 'negative') return 'negatively cached'
  if (last === 'throttled') return 'throttled by admission (QUEUE_CLIENT_RATE or QUEUE_INSTANCE_RATE)'
  if (o.some((x) => x.outcome === 'deferred')) return 'in the outbox when its process ended'
  return 'suppressed by the resend window'
}

/**
 * An input's enqueue history in one word chain: its distinct outcomes in order, repeats collapsed
 * ("deferred → queued": a failed or unanswered try the outbox sent again); "not offered" when the
 * server logged nothing for it (an L1 or L2 hit, or a request that failed).
 */
export function pathOf(trace: KeyTrace | undefined): string {
  const steps: string[] = []
  for (const { outcome, why } of trace?.outcomes ?? []) {
    const step = why === 'resend window' ? 'suppressed' : outcome // 'throttled': client admission
    if (steps[steps.length - 1] !== step) steps.push(step)
  }
  if (steps.length === 0) steps.push('not offered')
  if (trace?.done) steps.push('done')
  return steps.join(' → ')
}
