import { CtrError } from '../errors.ts'
import type { EmbedHandler, EmbedJob, JobOutcome } from './types.ts'

/** For handler authors: the outcome of one job that threw `err` (CtrError carries `.permanent`). */
export function outcomeOf(err: unknown): JobOutcome {
  const permanent = err instanceof CtrError && err.permanent
  return { ok: false, permanent, reason: err instanceof Error ? err.message : String(err) }
}

/**
 * Runs the handler and always returns exactly one outcome per job: a rejection or a short answer
 * becomes a transient failure, so a crashed worker's jobs are retried rather than lost.
 */
export async function runBatch(handler: EmbedHandler, batch: readonly EmbedJob[]): Promise<JobOutcome[]> {
  let outcomes: readonly JobOutcome[]
  try {
    outcomes = await handler(batch)
  } catch (err) {
    const reason = `handler failed: ${err instanceof Error ? err.message : String(err)}`
    return batch.map(() => ({ ok: false, permanent: false, reason }))
  }
  return batch.map((_, i) => outcomes[i] ?? { ok: false, permanent: false, reason: 'handler returned no outcome' })
}
