import { availableParallelism } from 'node:os'
import envSchema from 'env-schema'
import { parseClusterSeeds } from './cache/cluster-seeds.ts'
import { CtrError } from './errors.ts'

// Every setting comes from the environment and is validated once at start-up; a bad value stops
// the server with a message naming the variable. The README's configuration table mirrors this.
const schema = {
  type: 'object',
  properties: {
    PORT: { type: 'integer', minimum: 0, maximum: 65535, default: 3000 },
    HOST: { type: 'string', default: '0.0.0.0' },
    MODEL_DIR: { type: 'string', default: 'models/ctr-synth' },
    REDIS_URL: { type: 'string', default: '' },
    REDIS_CLUSTER_NODES: { type: 'string', default: '' },
    REDIS_PREFIX: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$', default: 'ctr' },
    CACHE_TTL_SECONDS: { type: 'integer', minimum: 60, default: 7 * 24 * 3600 },
    L1_MAX_BYTES: { type: 'integer', minimum: 1_048_576, default: 256 * 1024 * 1024 },
    L1_SNAPSHOT_PATH: { type: 'string', default: '' },
    FIELD_CACHE_MAX_BYTES: { type: 'integer', minimum: 65_536, default: 32 * 1024 * 1024 },
    L1_SNAPSHOT_INTERVAL_S: { type: 'integer', minimum: 0, default: 300 },
    MISS_POLICY: { type: 'string', enum: ['oov', 'budget'], default: 'oov' },
    BUDGET_MS: { type: 'integer', minimum: 10, maximum: 60_000, default: 200 },
    MAX_BUDGET_MS: { type: 'integer', minimum: 10, maximum: 60_000, default: 10_000 },
    INLINE_MAX_ITEMS: { type: 'integer', minimum: 0, maximum: 10_000, default: 4 },
    INLINE_CONCURRENCY: { type: 'integer', minimum: 1, maximum: 10_000, default: 16 },
    MAX_ITEMS: { type: 'integer', minimum: 1, maximum: 10_000, default: 1000 },
    IMAGE_FETCH_TIMEOUT_MS: { type: 'integer', minimum: 50, maximum: 60_000, default: 3000 },
    IMAGE_MAX_BYTES: { type: 'integer', minimum: 1024, maximum: 100 * 1024 * 1024, default: 8 * 1024 * 1024 },
    IMAGE_MAX_PIXELS: { type: 'integer', minimum: 1024, default: 25_000_000 },
    IMAGE_ALLOWED_HOSTS: { type: 'string', default: '' },
    IMAGE_HOST_CONCURRENCY: { type: 'integer', minimum: 1, maximum: 1000, default: 64 },
    EMBED_WORKERS: { type: 'integer', minimum: 1, maximum: 64, default: 1 },
    EMBED_BATCH_SIZE: { type: 'integer', minimum: 1, maximum: 256, default: 16 },
    EMBED_NICE: { type: 'integer', minimum: 0, maximum: 19, default: 19 },
    EMBED_CONCURRENCY: { type: 'integer', minimum: 1, maximum: 256, default: 16 },
    EMBED_TEXT_CONCURRENCY: { type: 'integer', minimum: 1, maximum: 256, default: 1 },
    QUEUE_CAPACITY: { type: 'integer', minimum: 1, default: 100_000 },
    QUEUE_CLIENT_RATE: { type: 'number', minimum: 0, default: 100 },
    QUEUE_CLIENT_BURST: { type: 'integer', minimum: 1, default: 2000 },
    QUEUE_INSTANCE_RATE: { type: 'number', minimum: 0, default: 1000 },
    QUEUE_INSTANCE_BURST: { type: 'integer', minimum: 1, default: 5000 },
    QUEUE_MAX_AGE_S: { type: 'integer', minimum: 0, default: 3600 },
    QUEUE_PRIORITY_HALF_LIFE_S: { type: 'number', exclusiveMinimum: 0, default: 60 },
    QUEUE_PARTITIONS: { type: 'integer', minimum: 1, maximum: 1024, default: 8 },
    QUEUE_CLAIM_MS: { type: 'integer', minimum: 300, maximum: 3_600_000, default: 30_000 },
    QUEUE_WAIT_REPLICAS: { type: 'integer', minimum: 0, maximum: 16, default: 1 },
    ORT_INTRA_OP_THREADS: { type: 'integer', minimum: 1, maximum: 64, default: 1 },
    HEAD_INTRA_OP_THREADS: { type: 'integer', minimum: 1, maximum: 64, default: 1 },
    WEB_CONCURRENCY: { type: 'integer', minimum: 1, maximum: 64, default: availableParallelism() },
    MAX_EVENT_LOOP_DELAY_MS: { type: 'integer', minimum: 0, default: 200 },
    SHUTDOWN_TIMEOUT_MS: { type: 'integer', minimum: 1000, maximum: 600_000, default: 25_000 },
    WARM_UP_REQUESTS: { type: 'integer', minimum: 0, maximum: 10_000, default: 200 },
    LOG_LEVEL: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
  },
} as const

export interface Config {
  PORT: number
  HOST: string
  MODEL_DIR: string
  REDIS_URL: string
  REDIS_CLUSTER_NODES: string
  REDIS_PREFIX: string
  CACHE_TTL_SECONDS: number
  L1_MAX_BYTES: number
  L1_SNAPSHOT_PATH: string
  FIELD_CACHE_MAX_BYTES: number
  L1_SNAPSHOT_INTERVAL_S: number
  MISS_POLICY: 'oov' | 'budget'
  BUDGET_MS: number
  MAX_BUDGET_MS: number
  INLINE_MAX_ITEMS: number
  INLINE_CONCURRENCY: number
  MAX_ITEMS: number
  IMAGE_FETCH_TIMEOUT_MS: number
  IMAGE_MAX_BYTES: number
  IMAGE_MAX_PIXELS: number
  IMAGE_ALLOWED_HOSTS: string
  IMAGE_HOST_CONCURRENCY: number
  EMBED_WORKERS: number
  EMBED_BATCH_SIZE: number
  EMBED_NICE: number
  EMBED_CONCURRENCY: number
  EMBED_TEXT_CONCURRENCY: number
  QUEUE_CAPACITY: number
  QUEUE_CLIENT_RATE: number
  QUEUE_CLIENT_BURST: number
  QUEUE_INSTANCE_RATE: number
  QUEUE_INSTANCE_BURST: number
  QUEUE_MAX_AGE_S: number
  QUEUE_PRIORITY_HALF_LIFE_S: number
  QUEUE_PARTITIONS: number
  QUEUE_CLAIM_MS: number
  QUEUE_WAIT_REPLICAS: number
  ORT_INTRA_OP_THREADS: number
  HEAD_INTRA_OP_THREADS: number
  WEB_CONCURRENCY: number
  MAX_EVENT_LOOP_DELAY_MS: number
  SHUTDOWN_TIMEOUT_MS: number
  /** Synthetic requests the server sends itself before it listens (src/predict/warm-up.ts); 0: none. */
  WARM_UP_REQUESTS: number
  LOG_LEVEL: string
}

/** Read and validate the configuration; `overrides` (tests, CLI flags) win over the environment. */
export function loadConfig(overrides: Partial<Record<keyof Config, string | number>> = {}, env: NodeJS.ProcessEnv = process.env): Config {
  const data: Record<string, unknown> = {}
  for (const key of Object.keys(schema.properties)) {
    const v = (overrides as Record<string, unknown>)[key] ?? env[key]
    if (v !== undefined) data[key] = v
  }
  let config: Config
  try {
    config = envSchema<Config>({ schema, data, dotenv: false, env: false })
  } catch (err) {
    throw new CtrError('BAD_CONFIG', ['environment', err instanceof Error ? err.message : String(err)])
  }
  if (config.BUDGET_MS > config.MAX_BUDGET_MS) {
    throw new CtrError('BAD_CONFIG', ['BUDGET_MS', `${config.BUDGET_MS} exceeds MAX_BUDGET_MS (${config.MAX_BUDGET_MS})`])
  }
  checkRedisEngine(config)
  return config
}

/** One Redis or one Redis Cluster, never both; a cluster seed list that does not parse names the variable. */
function checkRedisEngine(config: Config): void {
  if (!config.REDIS_CLUSTER_NODES) return
  if (config.REDIS_URL) {
    throw new CtrError('BAD_CONFIG', ['REDIS_URL, REDIS_CLUSTER_NODES', 'both are set; give REDIS_URL for one Redis or REDIS_CLUSTER_NODES for a Redis Cluster, not both'])
  }
  try {
    parseClusterSeeds(config.REDIS_CLUSTER_NODES)
  } catch (err) {
    throw new CtrError('BAD_CONFIG', ['REDIS_CLUSTER_NODES', err instanceof Error ? err.message : String(err)])
  }
}

export function allowedHosts(config: Config): string[] {
  return config.IMAGE_ALLOWED_HOSTS.split(',').map((s) => s.trim()).filter((s) => s.length > 0)
}

/** Whether a shared tier is configured (one Redis or a Redis Cluster). */
export function usesRedis(config: Pick<Config, 'REDIS_URL' | 'REDIS_CLUSTER_NODES'>): boolean {
  return config.REDIS_URL !== '' || config.REDIS_CLUSTER_NODES !== ''
}

