import fp from 'fastify-plugin'
import { withClientAdmission } from '../embedding/client-admission.ts'
import type { EmbedJob } from '../queue/types.ts'
import { CtrError } from '../errors.ts'
import { FieldFeatures } from '../fusion/field-features.ts'
import { RowCache } from '../fusion/row-cache.ts'
import { mixtureStatsOf } from '../mdn/batch-stats.ts'
import { InlineCompute } from '../predict/inline-compute.ts'
import { InlinePermits } from '../predict/inline-permits.ts'
import { PredictService } from '../predict/predict-service.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The request path: keys → tiered lookup → misses by policy → head inputs → scorer (head, statistics, JSON). */
    predict: PredictService
  }
}

export interface PredictPluginOptions {
  /**
   * Where misses go: 'queue' (default) puts them on the queue plugin's queue for background
   * embedding; 'nowhere' drops them (offline scoring, whose misses nobody would consume).
   */
  readonly misses?: 'queue' | 'nowhere'
}

const dropMisses = { enqueue: async (): Promise<number> => 0 }

export default fp<PredictPluginOptions>(async (app, opts) => {
  const { config, bundle, store, embedder, scorer, metrics, keyOf, log, vectorSlabs } = app
  const misses = opts.misses ?? 'queue'
  if (misses === 'queue' && !app.hasDecorator('queue')) {
    throw new CtrError('INTERNAL', ["the predict plugin sends misses to the queue: register the queue plugin first, or pass { misses: 'nowhere' }"])
  }
  app.decorate('predict', new PredictService({
    bundle, store, scorer, stats: mixtureStatsOf(bundle.manifest), metrics, keyOf, log, ...(vectorSlabs ? { slabs: vectorSlabs } : {}),
    queue: misses === 'queue'
      ? withClientAdmission(app.queue, {
        ratePerS: config.QUEUE_CLIENT_RATE, burst: config.QUEUE_CLIENT_BURST, maxClients: 10_000, metrics,
        instance: { ratePerS: config.QUEUE_INSTANCE_RATE, burst: config.QUEUE_INSTANCE_BURST },
        // The queue's per-key trace (debug) names throttled keys too, as `queue: enqueue` lines.
        ...(config.LOG_LEVEL === 'debug' || config.LOG_LEVEL === 'trace' ? { onThrottled: (job: EmbedJob) => log.debug({ key: job.key, outcome: 'throttled' }, 'queue: enqueue') } : {}),
      })
      : dropMisses,
    fields: new FieldFeatures(bundle, new RowCache({ maxBytes: config.FIELD_CACHE_MAX_BYTES, metrics })),
    inline: new InlineCompute({ embedder, permits: new InlinePermits(config.INLINE_CONCURRENCY), maxItems: config.INLINE_MAX_ITEMS }),
    defaults: { budgetMs: config.BUDGET_MS, missPolicy: config.MISS_POLICY, maxBudgetMs: config.MAX_BUDGET_MS },
  }))
}, { name: 'predict', dependencies: ['config', 'bundle', 'metrics', 'cache-store', 'encoders', 'scorer'] })
