import type { EmbedHandler, EmbedJob, JobOutcome } from '../queue/types.ts'
import type { EmbeddingService } from './embedding-service.ts'

/** What the handler needs of the cache (a TieredStore satisfies it). */
export interface JobStore {
  /** Which tier holds each key's vector, if any (`count: false`: not request traffic). */
  lookup(keys: string[], deadline: number, opts: { count: false }): Promise<Array<{ tier: 'l1' | 'l2'; vector: Float32Array } | undefined>>
  /** Writes to L1 and, when configured, Redis; resolves with the number written to Redis. */
  store(entries: Array<{ key: string; vector: Float32Array }>, deadline?: number): Promise<number>
  /** Present when a shared tier (Redis) is configured: done then means stored there. */
  readonly l2?: unknown
}

// Bound on the presence check before computing; past it the job simply computes.
const PRESENCE_CHECK_MS = 500
// Bound on confirming a write to Redis; past it the write counts as failed (the job is retried).
const STORE_MS = 2_000
// A background job has no caller waiting on a deadline: each fetch is bounded from its own start
// (IMAGE_FETCH_TIMEOUT_MS, in the fetcher), and an image loaded while encoders were busy is encoded,
// not dropped and fetched again (which cost retries and CPU during cold starts).
const NO_DEADLINE = Number.POSITIVE_INFINITY

/**
 * The queue's handler: one micro-batch of one modality through the embedding service. A job is
 * done only when its vector is stored where the fleet reads it: in Redis when one is configured
 * (a vector found only in this instance's L1 is written there first), in L1 otherwise. A write
 * to Redis that fails or stores fewer vectors than asked is a transient failure: the job is
 * retried, never acknowledged with its vector missing.
 */
export function makeJobHandler(
  embedder: Pick<EmbeddingService, 'compute'>,
  store: JobStore,
  log: { info(o: object, m: string): void },
): EmbedHandler {
  const durable = store.l2 !== undefined
  return async (batch: readonly EmbedJob[]): Promise<readonly JobOutcome[]> => {
    const modality = batch[0]?.modality
    if (!modality) return []
    const present = await store.lookup(batch.map((j) => j.key), Date.now() + PRESENCE_CHECK_MS, { count: false })
    const outcomes = new Map<string, JobOutcome>()
    // Vectors found in this instance's L1 only: written to Redis here (computed ones the service wrote).
    const toStore: Array<{ key: string; vector: Float32Array }> = []
    const todo: EmbedJob[] = []
    batch.forEach((job, i) => {
      const hit = present[i]
      if (!hit) todo.push(job)
      else if (hit.tier === 'l2' || !durable) outcomes.set(job.key, { ok: true })
      else toStore.push({ key: job.key, vector: hit.vector })
    })
    if (todo.length > 0) {
      const results = await embedder.compute(modality, todo.map((j) => ({ key: j.key, input: j.input })), NO_DEADLINE)
      results.forEach((r, i) => {
        const job = todo[i] as EmbedJob
        if (r.ok) {
          // The service wrote it once; its count says whether Redis holds it.
          outcomes.set(job.key, !durable || r.stored
            ? { ok: true }
            : { ok: false, permanent: false, reason: 'vector not confirmed in Redis (the write after computing it failed)' })
          return
        }
        log.info({ key: job.key, reason: r.error.message, permanent: r.permanent }, 'embedding failed')
        outcomes.set(job.key, { ok: false, permanent: r.permanent, reason: r.error.message })
      })
    }
    if (toStore.length > 0) {
      const written = await store.store(toStore, Date.now() + STORE_MS)
      const outcome: JobOutcome = written >= toStore.length
        ? { ok: true }
        : { ok: false, permanent: false, reason: `vector not confirmed in Redis (${written} of ${toStore.length} written)` }
      for (const { key } of toStore) outcomes.set(key, outcome)
    }
    return batch.map((j) => outcomes.get(j.key) ?? { ok: false, permanent: false, reason: 'no outcome' })
  }
}
