import { setTimeout as sleep } from 'node:timers/promises'
import type { EmbedRequest, EmbedResult, EmbeddingService, Modality } from '../embedding/embedding-service.ts'
import type { PredictItem } from '../predict/types.ts'
import { type BackoffOptions, backoffDelayMs } from '../queue/backoff.ts'
import type { Row } from './row-reader.ts'
import type { Checked } from './rows.ts'
import { failureReason } from '../embedding/failure-reason.ts'

// The core of `ctrserve warm`: items → cache keys (the server's keyOf) → skip the keys already
// present (tiered lookup) → the EmbeddingService computes the rest in micro-batches through the
// encoder worker pools and writes them to the store → transient failures are retried with backoff,
// permanent ones counted by reason. Chunks of rows run `concurrency` at a time; reading waits for
// a free slot, so memory is bounded by the chunks in flight.

export interface WarmDeps {
  readonly lookup: (keys: string[], deadline: number) => Promise<ReadonlyArray<unknown>>
  readonly embedder: Pick<EmbeddingService, 'compute'>
  readonly keyOf: (modality: Modality, input: string) => string
  /** Rows → items (validation, base URL). */
  readonly check: (value: unknown) => Checked<PredictItem>
  /**
   * Whether each key reached the durable tier (Redis) after a computation; a false is retried as
   * a transient `redis-write` failure. Absent when the target is the in-process L1 (snapshot).
   */
  readonly confirm?: (keys: string[]) => Promise<boolean[]>
}

export interface WarmOptions {
  /** Rows per chunk; one encoder call per modality per chunk (the micro-batch). */
  readonly batchSize: number
  /** Chunks in flight. */
  readonly concurrency: number
  /** Attempts per key for transient failures (timeouts, 5xx, connection, Redis writes). */
  readonly maxAttempts: number
  readonly backoff: BackoffOptions
  /** Deadline of one computation (fetches wait for per-host slots inside it; each fetch has its own timeout too). */
  readonly computeTimeoutMs: number
  readonly lookupTimeoutMs: number
  readonly onRows?: (n: number) => void
  /** Stop reading rows (SIGINT); chunks in flight finish. */
  readonly signal?: AbortSignal
}

export interface JobTally { done: number; skipped: number; failed: number; retried: number }

export interface WarmSummary {
  rows: number
  invalidRows: number
  jobs: Record<Modality, JobTally>
  /** Permanent failures and transient ones out of attempts, by reason (`http-4xx`, `timeout`, `invalid-row`, …). */
  failures: Record<string, number>
  /** One message per reason, for the operator. */
  examples: Record<string, string>
  interrupted: boolean
  seconds: number
}

const NEGATIVE_MAX_KEYS = 100_000

/** A short, bounded label for a failure: the shared mapping, else `encoder` or `other`. */
export function warmFailureReason(err: Error): string {
  return failureReason(err) ?? (/encoder/.test(err.message) ? 'encoder' : 'other')
}

export function failureRate(s: WarmSummary): number {
  let failed = s.invalidRows
  let all = s.invalidRows
  for (const t of Object.values(s.jobs)) { failed += t.failed; all += t.done + t.skipped + t.failed }
  return all > 0 ? failed / all : 0
}

export async function warm(rows: AsyncIterable<Row>, d: WarmDeps, o: WarmOptions): Promise<WarmSummary> {
  const t0 = performance.now()
  const s: WarmSummary = {
    rows: 0, invalidRows: 0,
    jobs: { image: { done: 0, skipped: 0, failed: 0, retried: 0 }, text: { done: 0, skipped: 0, failed: 0, retried: 0 } },
    failures: {}, examples: {}, interrupted: false, seconds: 0,
  }
  // Keys being computed by another chunk (counted there) and keys that failed for good this run.
  const inFlight = new Set<string>()
  const negative = new Map<string, string>()

  const fail = (modality: Modality, reason: string, message: string, n = 1): void => {
    s.jobs[modality].failed += n
    s.failures[reason] = (s.failures[reason] ?? 0) + n
    s.examples[reason] ??= message
  }

  const runModality = async (modality: Modality, items: readonly PredictItem[]): Promise<void> => {
    const byKey = new Map<string, string>()
    for (const it of items) {
      const input = modality === 'image' ? it.image_url : it.title
      if (input !== undefined && input.length > 0) byKey.set(d.keyOf(modality, input), input)
    }
    if (byKey.size === 0) return
    const keys = [...byKey.keys()]
    const found = await d.lookup(keys, Date.now() + o.lookupTimeoutMs)
    let todo: EmbedRequest[] = []
    keys.forEach((key, i) => {
      const earlier = negative.get(key)
      if (found[i] !== undefined || inFlight.has(key)) s.jobs[modality].skipped++
      else if (earlier !== undefined) fail(modality, earlier, `${key}: failed earlier in this run`)
      else todo.push({ key, input: byKey.get(key) as string })
    })
    for (const r of todo) inFlight.add(r.key)
    try {
      for (let attempt = 1; todo.length > 0; attempt++) {
        const results = await d.embedder.compute(modality, todo, Date.now() + o.computeTimeoutMs)
        const outcome = await settle(todo, results, d.confirm)
        s.jobs[modality].done += outcome.done
        const retry: EmbedRequest[] = []
        for (const f of outcome.failed) {
          if (!f.permanent && attempt < o.maxAttempts) { retry.push(f.req); continue }
          const reason = f.reason
          if (f.permanent && negative.size < NEGATIVE_MAX_KEYS) negative.set(f.req.key, reason)
          fail(modality, reason, f.message)
        }
        if (retry.length > 0) {
          s.jobs[modality].retried += retry.length
          await sleep(backoffDelayMs(attempt, o.backoff))
        }
        todo = retry
      }
    } finally {
      for (const key of byKey.keys()) inFlight.delete(key)
    }
  }

  const runChunk = async (values: readonly unknown[]): Promise<void> => {
    const items: PredictItem[] = []
    for (const v of values) {
      const c = d.check(v)
      if (c.ok) items.push(c.value)
      else { s.invalidRows++; s.failures['invalid-row'] = (s.failures['invalid-row'] ?? 0) + 1; s.examples['invalid-row'] ??= c.error }
    }
    await Promise.all([runModality('image', items), runModality('text', items)])
    o.onRows?.(values.length)
  }

  const running = new Set<Promise<void>>()
  let firstError: unknown
  const launch = async (chunk: unknown[]): Promise<void> => {
    while (running.size >= o.concurrency) await Promise.race(running)
    const p: Promise<void> = runChunk(chunk).catch((err: unknown) => { firstError ??= err }).finally(() => running.delete(p))
    running.add(p)
  }

  let chunk: unknown[] = []
  for await (const row of rows) {
    if (o.signal?.aborted) {
      s.interrupted = true
      s.rows -= chunk.length // read but never started: a rerun does them
      break
    }
    if (firstError !== undefined) break
    s.rows++
    if (row.error !== undefined) {
      s.invalidRows++
      s.failures['invalid-row'] = (s.failures['invalid-row'] ?? 0) + 1
      s.examples['invalid-row'] ??= row.error
      o.onRows?.(1)
      continue
    }
    chunk.push(row.value)
    if (chunk.length >= o.batchSize) { await launch(chunk); chunk = [] }
  }
  if (chunk.length > 0 && !s.interrupted && firstError === undefined) await launch(chunk)
  await Promise.all(running)
  if (firstError !== undefined) throw firstError
  s.seconds = (performance.now() - t0) / 1000
  return s
}

interface Failed { req: EmbedRequest; permanent: boolean; reason: string; message: string }

/** Splits one computation's results into done and failed, confirming writes to the durable tier. */
async function settle(
  reqs: readonly EmbedRequest[], results: readonly EmbedResult[], confirm: WarmDeps['confirm'],
): Promise<{ done: number; failed: Failed[] }> {
  const failed: Failed[] = []
  const ok: EmbedRequest[] = []
  reqs.forEach((req, i) => {
    const r = results[i]
    if (r?.ok) ok.push(req)
    else {
      const error = r?.error ?? new Error('no result')
      failed.push({ req, permanent: r?.permanent ?? false, reason: warmFailureReason(error), message: error.message })
    }
  })
  if (!confirm || ok.length === 0) return { done: ok.length, failed }
  const present = await confirm(ok.map((r) => r.key))
  let done = 0
  ok.forEach((req, i) => {
    if (present[i]) done++
    else failed.push({ req, permanent: false, reason: 'redis-write', message: `${req.key}: not in Redis after the write` })
  })
  return { done, failed }
}
