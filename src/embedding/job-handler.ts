import type { EmbedHandler, EmbedJob, JobOutcome } from '../queue/types.ts'
import type { EmbeddingService } from './embedding-service.ts'

/**
 * The queue's handler: one micro-batch of one modality through the embedding service, which
 * writes the vectors to the cache. Each job gets the fetch timeout as its own deadline.
 */
export function makeJobHandler(embedder: Pick<EmbeddingService, 'compute'>, jobTimeoutMs: number, log: { info(o: object, m: string): void }): EmbedHandler {
  return async (batch: readonly EmbedJob[]): Promise<readonly JobOutcome[]> => {
    const modality = batch[0]?.modality
    if (!modality) return []
    const results = await embedder.compute(modality, batch.map((j) => ({ key: j.key, input: j.input })), Date.now() + jobTimeoutMs)
    return results.map((r, i): JobOutcome => {
      if (r.ok) return { ok: true }
      log.info({ key: batch[i]?.key, reason: r.error.message, permanent: r.permanent }, 'embedding failed')
      return { ok: false, permanent: r.permanent, reason: r.error.message }
    })
  }
}
