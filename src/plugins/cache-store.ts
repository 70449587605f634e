import fp from 'fastify-plugin'
import { embeddingKey } from '../cache/keys.ts'
import { memoizedKeyOf } from '../cache/key-memo.ts'
import { L1Cache } from '../cache/l1.ts'
import { L2Cache } from '../cache/l2.ts'
import { TieredStore } from '../cache/tiered-store.ts'
import type { SavedJob } from '../cache/l1-snapshot.ts'
import type { KeyFn } from '../predict/predict-service.ts'
import { VectorSlabs } from '../scoring/vector-slabs.ts'
import { projectionTail } from '../scoring/image-projections.ts'

/** The L1 snapshot file (L1_SNAPSHOT_PATH) and the background jobs that travel with it. */
export interface L1Snapshots {
  /** Unfinished jobs of the in-process queue saved at the last shutdown, to re-queue at start. */
  readonly savedJobs: readonly SavedJob[]
  /** Jobs to save with each snapshot; the embedding consumer sets it for the in-process queue. */
  jobsToSave: () => readonly SavedJob[]
  /** Write the snapshot now (no-op without L1_SNAPSHOT_PATH); never rejects (failures are logged). */
  save(): Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    snapshots: L1Snapshots
    /** L1 in front of L2 (Redis or Redis Cluster when configured). */
    store: TieredStore
    /** The cache key of an input under this bundle's encoder versions. */
    keyOf: KeyFn
    /** Shared memory the L1's vectors live in when scorer threads read them (WEB_CONCURRENCY > 1). */
    vectorSlabs: VectorSlabs | undefined
  }
}

/** L1 (restored from its snapshot when configured) and L2; on close, the L1 snapshot is written. */
export default fp(async (app) => {
  const { config, bundle, metrics, redis, log } = app
  const m = bundle.manifest
  const versions = { image: m.encoders.image.version, text: m.encoders.text.version }
  // Image slots keep the head's projection of their vector when the bundle's head is split.
  const projection = m.head.image_projection
  const tails = projection ? [projectionTail(m.oov.image.dim, projection.dim)] : []
  const slabs = config.WEB_CONCURRENCY > 1 ? new VectorSlabs(config.L1_MAX_BYTES, Date.now, tails) : undefined
  app.decorate('vectorSlabs', slabs)
  const l1 = new L1Cache({ maxBytes: config.L1_MAX_BYTES, ...(slabs ? { home: slabs } : {}) })
  const path = config.L1_SNAPSHOT_PATH
  let savedJobs: readonly SavedJob[] = []
  if (path) {
    const r = await l1.loadSnapshot(path, { versions })
    if (r.loaded) log.info({ entries: r.entries, jobs: r.jobs.length, path }, 'L1 snapshot restored')
    else log.warn({ reason: r.reason, path }, 'L1 snapshot ignored')
    if (r.loaded) savedJobs = r.jobs
  }
  const l2 = redis ? new L2Cache({ redis, dims: { image: m.oov.image.dim, text: m.oov.text.dim }, metrics, logger: log }) : undefined
  app.decorate('store', new TieredStore({ l1, ...(l2 ? { l2 } : {}), ttlSeconds: config.CACHE_TTL_SECONDS, metrics }))
  // Hot inputs' keys are kept built (key-memo.ts): hashing and flattening them was ~10 % of the request thread.
  app.decorate('keyOf', memoizedKeyOf((modality, input) => embeddingKey(config.REDIS_PREFIX, modality, versions[modality], input)))

  const snapshots: L1Snapshots = {
    savedJobs,
    jobsToSave: () => [],
    save: async () => {
      if (!path) return
      const jobs = snapshots.jobsToSave()
      try {
        const w = await l1.saveSnapshot(path, { versions, jobs })
        log.info({ entries: w.entries, bytes: w.bytes, jobs: jobs.length }, 'L1 snapshot written')
      } catch (err) {
        log.error({ err: String(err) }, 'L1 snapshot failed')
      }
    },
  }
  app.decorate('snapshots', snapshots)
  const snapshot = snapshots.save
  if (!path) return
  const timer = config.L1_SNAPSHOT_INTERVAL_S > 0 ? setInterval(() => void snapshot(), config.L1_SNAPSHOT_INTERVAL_S * 1000).unref() : undefined
  // Runs after the embedding consumer's close (registered later), so drained jobs are in the snapshot.
  app.addHook('onClose', async () => {
    clearInterval(timer)
    await snapshot()
  })
}, { name: 'cache-store', dependencies: ['config', 'bundle', 'metrics', 'redis'] })
