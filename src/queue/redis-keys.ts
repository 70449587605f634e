import type { Modality } from './types.ts'

/**
 * Every key the durable queue uses starts with `prefix`. On Redis Cluster give the prefix a hash
 * tag (e.g. `{ctrq}`) so a script's keys share one slot.
 */
export interface QueueKeys {
  /** Stream of jobs waiting or in flight, one per modality so a read is one micro-batch. */
  stream(modality: Modality): string
  /** ZSET of retries waiting for their backoff, score = due time (ms, Redis clock). */
  delayed(modality: Modality): string
  /** Marker held while a key is queued, delayed or in flight: deduplication across instances. */
  pending(cacheKey: string): string
  /** Marker held for a while after a permanent or exhausted failure. */
  negative(cacheKey: string): string
}

export function queueKeys(prefix: string): QueueKeys {
  return {
    stream: (modality) => `${prefix}:stream:${modality}`,
    delayed: (modality) => `${prefix}:delayed:${modality}`,
    pending: (cacheKey) => `${prefix}:pending:${cacheKey}`,
    negative: (cacheKey) => `${prefix}:neg:${cacheKey}`,
  }
}
