import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

// Every metric ctrserve exports, on one registry per app instance (tests build many apps).
export interface Metrics {
  readonly registry: Registry
  readonly requestStage: Histogram<'stage'>
  readonly cacheLookups: Counter<'tier' | 'modality' | 'result'>
  readonly sources: Counter<'modality' | 'source'>
  readonly queueDepth: Gauge<'queue'>
  readonly jobs: Counter<'modality' | 'outcome'>
  readonly embedSeconds: Histogram<'modality'>
  readonly redisErrors: Counter<'op'>
  readonly fetchFailures: Counter<'reason'>
  readonly queueAdmission: Counter<'result'>
  readonly fieldRowCache: Gauge<'stat'>
  readonly lateResponses: Counter
  readonly degraded: Counter<'reason'>
  readonly shed: Counter<'reason'>
  readonly imageProjections: Counter
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5]

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry()
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'ctrserve_' })
  const registers = [registry]
  return {
    registry,
    requestStage: new Histogram({
      name: 'ctrserve_request_stage_seconds', help: 'Latency of /predict by stage (total, validate, lookup, compute, head, stats)',
      labelNames: ['stage'], buckets: LATENCY_BUCKETS, registers,
    }),
    cacheLookups: new Counter({
      name: 'ctrserve_cache_lookups_total', help: 'Embedding cache lookups by tier, modality and result (hit/miss)',
      labelNames: ['tier', 'modality', 'result'], registers,
    }),
    sources: new Counter({
      name: 'ctrserve_embedding_sources_total', help: 'Where each served embedding came from (l1, l2, computed, oov, absent)',
      labelNames: ['modality', 'source'], registers,
    }),
    queueDepth: new Gauge({
      name: 'ctrserve_queue_depth', help: 'Embedding jobs waiting', labelNames: ['queue'], registers,
    }),
    jobs: new Counter({
      name: 'ctrserve_embedding_jobs_total', help: 'Embedding jobs by outcome (queued, deduplicated, negative, dropped, unknown, deferred, expired, evicted, done, retried, failed)',
      labelNames: ['modality', 'outcome'], registers,
    }),
    embedSeconds: new Histogram({
      name: 'ctrserve_embedding_seconds', help: 'Time to compute one micro-batch of embeddings',
      labelNames: ['modality'], buckets: LATENCY_BUCKETS, registers,
    }),
    redisErrors: new Counter({
      name: 'ctrserve_redis_errors_total', help: 'Redis calls that failed or timed out', labelNames: ['op'], registers,
    }),
    queueAdmission: new Counter({
      name: 'ctrserve_queue_admission_total',
      help: 'Misses offered to the embedding queue from /predict: admitted, throttled by the per-client bound (QUEUE_CLIENT_RATE), or throttled_instance by the bound on every client together (QUEUE_INSTANCE_RATE)',
      labelNames: ['result'], registers,
    }),
    fieldRowCache: new Gauge({
      name: 'ctrserve_field_row_cache', help: 'Cache of hashed categorical values (FIELD_CACHE_MAX_BYTES): bytes charged and entries',
      labelNames: ['stat'], registers,
    }),
    fetchFailures: new Counter({
      name: 'ctrserve_image_fetch_failures_total', help: 'Image fetches that ended without an image, by reason',
      labelNames: ['reason'], registers,
    }),
    lateResponses: new Counter({
      name: 'ctrserve_late_responses_total', help: '/predict answers given after their budget_ms (counted from arrival)', registers,
    }),
    degraded: new Counter({
      name: 'ctrserve_degraded_responses_total',
      help: 'Requests answered with less than was possible, by reason (one count per reason per request): inline-item-cap, inline-busy, inline-no-time, inline-abandoned, lookup-skipped',
      labelNames: ['reason'], registers,
    }),
    imageProjections: new Counter({
      name: 'ctrserve_image_projections_total',
      help: 'Image vectors run through the split head\'s first layer in scorer threads: once per cached image (kept in its slot), every time for one outside shared memory',
      registers,
    }),
    shed: new Counter({
      name: 'ctrserve_shed_requests_total',
      help: 'Requests answered 503 OVERLOADED before any work, by reason: eventLoopDelay (mean event-loop delay over MAX_EVENT_LOOP_DELAY_MS in the last second), scorer_backlog (expected wait for a scorer thread past the request budget)',
      labelNames: ['reason'], registers,
    }),
  }
}
