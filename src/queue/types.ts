// The contract between the request path (which enqueues misses), the queue (which only
// schedules) and the embedding workers (the handler, which computes and writes the cache).

export { MODALITIES, type Modality } from '../modalities/modality.ts'
import type { Modality } from '../modalities/modality.ts'

export interface EmbedJob {
  /** The cache key the embedding is written under; also the deduplication key. */
  readonly key: string
  readonly modality: Modality
  /** Image URL or title text. */
  readonly input: string
}

/**
 * Per-job result of a handler call. `permanent` failures (404, undecodable image) are negatively
 * cached; transient ones are retried with backoff until the attempts run out.
 */
export type JobOutcome = { readonly ok: true } | { readonly ok: false; readonly permanent: boolean; readonly reason: string }

/**
 * Computes the embeddings for one micro-batch (always of one modality) and writes them to the
 * cache itself. Returns one outcome per job, in order. A rejection counts as a transient failure
 * of every job in the batch: a handler that knows a job is permanently bad says so per job.
 */
export type EmbedHandler = (batch: readonly EmbedJob[]) => Promise<readonly JobOutcome[]>

export interface ConsumeOptions {
  /** Concurrent handler calls per modality (image and text batches run side by side). */
  readonly concurrency: number
  /** A modality's own number of concurrent handler calls, in place of `concurrency`. */
  readonly modalityConcurrency?: Partial<Readonly<Record<Modality, number>>>
  /** Most jobs in one handler call. */
  readonly batchSize: number
  /** How long a partial batch waits for more jobs of its modality before it runs anyway. */
  readonly batchWaitMs: number
}

export interface CloseOptions {
  /** true: finish queued jobs first; false: stop taking jobs and only let in-flight batches end. */
  readonly drain: boolean
  /** Upper bound on the wait; after it, in-flight batches are abandoned (see each queue). */
  readonly timeoutMs: number
}

export interface EmbedQueue {
  /**
   * Offers jobs; returns how many were newly accepted. Jobs already queued or in flight (same
   * key), negatively cached keys and jobs over capacity are skipped. Never rejects: the request
   * path answers with OOV vectors either way.
   */
  enqueue(jobs: readonly EmbedJob[]): Promise<number>
  /**
   * Whether an offer of `key` now would only be a repeat: queued or in flight in this process
   * (in-process queue), or sent within the resend window (Redis queue). Per-client admission does
   * not charge repeats, so a client asking again for its own hot misses keeps its budget.
   */
  isRepeat(key: string): boolean
  /** Starts consuming with `handler`. Call at most once. */
  start(handler: EmbedHandler, opts: ConsumeOptions): void
  /** Jobs waiting (ready or waiting for a retry), not counting batches in flight. */
  depth(): Promise<number>
  /** Whether each key is negatively cached (a recent permanent or exhausted failure). */
  isNegative(keys: readonly string[]): Promise<boolean[]>
  close(opts: CloseOptions): Promise<void>
}

/** The metrics a queue reports to; a narrow slice of `Metrics`. */
export interface QueueMetrics {
  readonly queueDepth: { set(labels: { queue: string }, value: number): void }
  readonly jobs: { inc(labels: { modality: string; outcome: JobMetricOutcome }, value?: number): void }
  readonly redisErrors: { inc(labels: { op: string }, value?: number): void }
}

/**
 * queued: newly accepted; deduplicated: already queued or in flight (its priority was raised);
 * negative: skipped because negatively cached; dropped: refused (queue full or closed, or
 * abandoned at close, or a failed enqueue the outbox gave up); unknown: the enqueue's reply (or its
 * replicas' acknowledgement) never came and the outbox gave up (it may or may not be queued);
 * deferred: a try failed or went unanswered, the job waits in the outbox to be sent again (it
 * then counts once more, by what became of it);
 * expired: waited longer than the queue's maximum age and was dropped unrun; evicted: left a full
 * in-process queue unrun to make room for a job that was asked for more;
 * done / retried / failed: handler results (failed = permanent or out of attempts, then negative).
 */
export type JobMetricOutcome =
  | 'queued' | 'deduplicated' | 'negative' | 'dropped' | 'unknown' | 'deferred' | 'expired' | 'evicted' | 'done' | 'retried' | 'failed'
