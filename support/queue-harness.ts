// Shared by the durable-queue tests (single Redis and Redis Cluster): cache keys of a given
// encoder version, a recording handler, a recording logger, metric reads and a polling wait.
import { setTimeout as sleep } from 'node:timers/promises'
import { embeddingKey } from '../src/cache/keys.ts'
import type { Metrics } from '../src/metrics.ts'
import type { EmbedHandler, EmbedJob, JobOutcome, Modality } from '../src/queue/types.ts'

export const OK: JobOutcome = { ok: true }

/** A job whose key is a real cache key of `version` (the queue routes by the version in the key). */
export function cacheJob(prefix: string, name: string, modality: Modality = 'image', version = 'v1'): EmbedJob {
  const input = modality === 'image' ? `https://origin.test/${name}.jpg` : `title ${name}`
  return { key: embeddingKey(prefix, modality, version, input), modality, input }
}

export async function jobCount(metrics: Metrics, outcome: string): Promise<number> {
  const { values } = await metrics.jobs.get()
  return values.filter((v) => v.labels.outcome === outcome).reduce((sum, v) => sum + v.value, 0)
}

export async function redisErrors(metrics: Metrics, op?: string): Promise<number> {
  const { values } = await metrics.redisErrors.get()
  return values.filter((v) => op === undefined || v.labels.op === op).reduce((sum, v) => sum + v.value, 0)
}

export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time')
    await sleep(10)
  }
}

/** A handler that records every key it is handed, in order, and answers with `outcome`. */
export function recorder(outcome: (job: EmbedJob, call: number) => JobOutcome = () => OK): { handler: EmbedHandler; seen: string[]; batches: number[] } {
  const seen: string[] = []
  const batches: number[] = []
  const calls = new Map<string, number>()
  return {
    seen, batches,
    handler: async (batch) => {
      batches.push(batch.length)
      seen.push(...batch.map((j) => j.key))
      return batch.map((j) => {
        const n = (calls.get(j.key) ?? 0) + 1
        calls.set(j.key, n)
        return outcome(j, n)
      })
    },
  }
}

export interface LogLine { readonly level: 'info' | 'warn'; readonly o: object; readonly m: string }

export function recordingLog(): { lines: LogLine[]; info(o: object, m: string): void; warn(o: object, m: string): void } {
  const lines: LogLine[] = []
  return { lines, info: (o, m) => { lines.push({ level: 'info', o, m }) }, warn: (o, m) => { lines.push({ level: 'warn', o, m }) } }
}
