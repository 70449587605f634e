import { CtrError } from '../errors.ts'

/**
 * A short, bounded label for why an image or title failed to embed (metrics, summaries): the
 * image fetcher's reason when the error carries one (also across the worker-thread boundary,
 * where errors lose their class but keep `cause.reason`), else one from the catalog code.
 */
export function failureReason(err: unknown): string | undefined {
  const cause = err instanceof Error ? (err.cause as { reason?: unknown } | undefined) : undefined
  if (typeof cause === 'object' && cause !== null && typeof cause.reason === 'string') return cause.reason
  if (err instanceof CtrError && err.code === 'CTR_ERR_IMAGE_INVALID') return 'invalid-image'
  if (err instanceof CtrError && err.code === 'CTR_ERR_FETCH_REFUSED') return 'refused'
  return undefined
}
