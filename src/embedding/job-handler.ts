import type { EmbedHandler, EmbedJob, JobOutcome } from '../queue/types.ts'
import type { EmbeddingService } from './embedding-service.ts'

/** What the handler needs of the cache: whether a vector is already there. */
export interface PresenceLookup {
  lookup(keys: string[], deadline: number, opts: { count: false }): Promise<Array<unknown | undefined>>
}

// Bound on the presence check before computing; past it the job simply computes.
const PRESENCE_CHECK_MS = 500

/**
 * The queue's handler: one micro-batch of one modality through the embedding service, which
 * writes the vectors to the cache. Jobs whose vector is already cached (another instance computed
 * it, or the request path queued it only because Redis was slow to answer) are done without work.
 */
export function makeJobHandler(
  embedder: Pick<EmbeddingService, 'compute'>,
  store: PresenceLookup,
  jobTimeoutMs: number,
  log: { info(o: object, m: string): void },
): EmbedHandler {
  return async (batch: readonly EmbedJob[]): Promise<readonly JobOutcome[]> => {
    const modality = batch[0]?.modality
    if (!modality) return []
    const present = await store.lookup(batch.map((j) => j.key), Date.now() + PRESENCE_CHECK_MS, { count: false })
    const todo = batch.filter((_, i) => present[i] === undefined)
    const outcomes = new Map<string, JobOutcome>()
    if (todo.length > 0) {
      const results = await embedder.compute(modality, todo.map((j) => ({ key: j.key, input: j.input })), Date.now() + jobTimeoutMs)
      results.forEach((r, i) => {
        const job = todo[i] as EmbedJob
        if (r.ok) { outcomes.set(job.key, { ok: true }); return }
        log.info({ key: job.key, reason: r.error.message, permanent: r.permanent }, 'embedding failed')
        outcomes.set(job.key, { ok: false, permanent: r.permanent, reason: r.error.message })
      })
    }
    return batch.map((j) => outcomes.get(j.key) ?? { ok: true })
  }
}
