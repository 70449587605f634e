import fp from 'fastify-plugin'
import { embeddingKey } from '../cache/keys.ts'
import { L1Cache } from '../cache/l1.ts'
import { L2Cache } from '../cache/l2.ts'
import { TieredStore } from '../cache/tiered-store.ts'
import type { KeyFn } from '../predict/predict-service.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** L1 in front of L2 (Redis or Redis Cluster when configured). */
    store: TieredStore
    /** The cache key of an input under this bundle's encoder versions. */
    keyOf: KeyFn
  }
}

/** L1 (restored from its snapshot when configured) and L2; on close, the L1 snapshot is written. */
export default fp(async (app) => {
  const { config, bundle, metrics, redis, log } = app
  const m = bundle.manifest
  const versions = { image: m.encoders.image.version, text: m.encoders.text.version }
  const l1 = new L1Cache({ maxBytes: config.L1_MAX_BYTES })
  const path = config.L1_SNAPSHOT_PATH
  if (path) {
    const r = await l1.loadSnapshot(path, { versions })
    if (r.loaded) log.info({ entries: r.entries, path }, 'L1 snapshot restored')
    else log.warn({ reason: r.reason, path }, 'L1 snapshot ignored')
  }
  const l2 = redis ? new L2Cache({ redis, dims: { image: m.oov.image.dim, text: m.oov.text.dim }, metrics, logger: log }) : undefined
  app.decorate('store', new TieredStore({ l1, ...(l2 ? { l2 } : {}), ttlSeconds: config.CACHE_TTL_SECONDS, metrics }))
  app.decorate('keyOf', (modality, input) => embeddingKey(config.REDIS_PREFIX, modality, versions[modality], input))

  const snapshot = async (): Promise<void> => {
    try {
      const w = await l1.saveSnapshot(path, { versions })
      log.info({ entries: w.entries, bytes: w.bytes }, 'L1 snapshot written')
    } catch (err) {
      log.error({ err: String(err) }, 'L1 snapshot failed')
    }
  }
  if (!path) return
  const timer = config.L1_SNAPSHOT_INTERVAL_S > 0 ? setInterval(() => void snapshot(), config.L1_SNAPSHOT_INTERVAL_S * 1000).unref() : undefined
  // Runs after the embedding consumer's close (registered later), so drained jobs are in the snapshot.
  app.addHook('onClose', async () => {
    clearInterval(timer)
    await snapshot()
  })
}, { name: 'cache-store', dependencies: ['config', 'bundle', 'metrics', 'redis'] })
