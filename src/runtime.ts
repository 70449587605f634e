import type { Redis } from 'ioredis'
import { type Bundle, loadBundle } from './bundle/load-bundle.ts'
import { embeddingKey } from './cache/keys.ts'
import { L1Cache } from './cache/l1.ts'
import { L2Cache } from './cache/l2.ts'
import { createRedisClient } from './cache/redis-client.ts'
import { TieredStore } from './cache/tiered-store.ts'
import { type Config, allowedHosts } from './config.ts'
import type { EncoderPool } from './embedding/encoder-pool.ts'
import { createEncoderPools } from './embedding/encoder-pools.ts'
import { EmbeddingService } from './embedding/embedding-service.ts'
import { makeJobHandler } from './embedding/job-handler.ts'
import { FieldFeatures } from './fusion/field-features.ts'
import { Head } from './fusion/head.ts'
import { type Metrics, createMetrics } from './metrics.ts'
import { PredictService } from './predict/predict-service.ts'
import { createQueue } from './embedding/create-queue.ts'
import type { EmbedQueue } from './queue/types.ts'

export interface Logger {
  info(o: object, m: string): void
  warn(o: object, m: string): void
  error(o: object, m: string): void
}

/** Everything a process needs to score: the server, and the command-line tools, build one of these. */
export interface Runtime {
  readonly config: Config
  readonly bundle: Bundle
  readonly metrics: Metrics
  readonly store: TieredStore
  readonly queue: EmbedQueue
  readonly embedder: EmbeddingService
  readonly imagePool: EncoderPool
  readonly textPool: EncoderPool
  readonly head: Head
  readonly predict: PredictService
  readonly redis?: Redis
  keyOf(modality: 'image' | 'text', input: string): string
  readiness(): { ready: boolean; bundle: string; redis: 'absent' | 'ready' | 'down' }
  /** Stop consuming (hand queued jobs back to Redis, or finish them in memory), snapshot L1, free all. */
  close(): Promise<void>
}

export interface RuntimeOptions {
  /** Start background embedding (the server does; `ctrserve score` in oov mode may not). */
  readonly consume?: boolean
  /** Queue the misses of predict() for background embedding (default true; offline `score` opts out). */
  readonly enqueueMisses?: boolean
  readonly metrics?: Metrics
}

export async function createRuntime(config: Config, log: Logger, opts: RuntimeOptions = {}): Promise<Runtime> {
  const bundle = await loadBundle(config.MODEL_DIR)
  const m = bundle.manifest
  const metrics = opts.metrics ?? createMetrics()

  const redis = config.REDIS_URL ? createRedisClient(config.REDIS_URL) : undefined
  const l1 = new L1Cache({ maxBytes: config.L1_MAX_BYTES })
  const versions = { image: m.encoders.image.version, text: m.encoders.text.version }
  if (config.L1_SNAPSHOT_PATH) {
    const r = await l1.loadSnapshot(config.L1_SNAPSHOT_PATH, { versions })
    if (r.loaded) log.info({ entries: r.entries, path: config.L1_SNAPSHOT_PATH }, 'L1 snapshot restored')
    else log.warn({ reason: r.reason, path: config.L1_SNAPSHOT_PATH }, 'L1 snapshot ignored')
  }
  const l2 = redis
    ? new L2Cache({ redis, dims: { image: m.oov.image.dim, text: m.oov.text.dim }, metrics, logger: log })
    : undefined
  const store = new TieredStore({ l1, ...(l2 ? { l2 } : {}), ttlSeconds: config.CACHE_TTL_SECONDS, metrics })

  const enc = m.encoders
  const { imagePool, textPool } = await createEncoderPools(bundle, {
    imageWorkers: config.EMBED_WORKERS, ortThreads: config.ORT_INTRA_OP_THREADS, nice: config.EMBED_NICE,
    imageLoading: {
      spec: enc.image.input,
      fetch: { timeoutMs: config.IMAGE_FETCH_TIMEOUT_MS, maxBytes: config.IMAGE_MAX_BYTES, maxRedirects: 3, allowedHosts: allowedHosts(config) },
      limitInputPixels: config.IMAGE_MAX_PIXELS,
      hostConcurrency: config.IMAGE_HOST_CONCURRENCY,
    },
  }, log)
  const head = await Head.load(bundle, config.HEAD_INTRA_OP_THREADS)

  const embedder = new EmbeddingService({ imagePool, textPool, sink: store, metrics })
  const queue = createQueue({ config, redis, metrics, versions, log })
  if (opts.consume ?? true) {
    queue.start(makeJobHandler(embedder, store, config.IMAGE_FETCH_TIMEOUT_MS + 1000, log), {
      concurrency: config.EMBED_CONCURRENCY, batchSize: config.EMBED_BATCH_SIZE, batchWaitMs: 5,
    })
  }
  const keyOf = (modality: 'image' | 'text', input: string): string =>
    embeddingKey(config.REDIS_PREFIX, modality, versions[modality], input)
  const predict = new PredictService({
    bundle, store, queue: opts.enqueueMisses === false ? { enqueue: async () => 0 } : queue, embedder, head, fields: new FieldFeatures(bundle), metrics, keyOf, log,
    defaults: { budgetMs: config.BUDGET_MS, missPolicy: config.MISS_POLICY },
  })

  const snapshot = async (): Promise<void> => {
    if (!config.L1_SNAPSHOT_PATH) return
    try {
      const w = await l1.saveSnapshot(config.L1_SNAPSHOT_PATH, { versions })
      log.info({ entries: w.entries, bytes: w.bytes }, 'L1 snapshot written')
    } catch (err) {
      log.error({ err: String(err) }, 'L1 snapshot failed')
    }
  }
  const timer = config.L1_SNAPSHOT_PATH && config.L1_SNAPSHOT_INTERVAL_S > 0
    ? setInterval(() => void snapshot(), config.L1_SNAPSHOT_INTERVAL_S * 1000).unref()
    : undefined

  return {
    config, bundle, metrics, store, queue, embedder, imagePool, textPool, head, predict, keyOf,
    ...(redis ? { redis } : {}),
    readiness: () => ({
      ready: !redis || redis.status === 'ready',
      bundle: `${m.name}@${m.version}`,
      redis: !redis ? 'absent' : redis.status === 'ready' ? 'ready' : 'down',
    }),
    close: async () => {
      if (timer) clearInterval(timer)
      // Durable queue: in-flight jobs end or stay un-acked for another instance; memory: finish them.
      await queue.close({ drain: !redis, timeoutMs: 10_000 })
      await snapshot()
      await Promise.all([imagePool.close(), textPool.close(), head.close()])
      redis?.disconnect()
    },
  }
}
