// A durable-queue consumer in its own process, for tests that must kill one outright (SIGKILL:
// no close, no release, its lease renewals simply stop). Its handler never answers; it prints
// `taken <key>` for every job it is handed. Usage: tsx support/queue-consumer-process.ts <redis-url> <prefix> <leaseMs>
import { Redis } from 'ioredis'
import { createMetrics } from '../src/metrics.ts'
import { RedisQueue } from '../src/queue/redis-queue.ts'

const [url = '', prefix = '', leaseMs = '300'] = process.argv.slice(2)
const redis = new Redis(url)
const quiet = { info: () => undefined, warn: () => undefined }
const queue = new RedisQueue({
  redis, prefix, metrics: createMetrics({ defaultMetrics: false }), log: quiet, versions: { image: 'v1', text: 'v1' },
  maxAttempts: 3, backoff: { baseMs: 50, maxMs: 1_000 }, negativeTtlMs: 60_000, leaseMs: Number(leaseMs), pollMs: 20,
})
queue.start(async (batch) => {
  for (const job of batch) process.stdout.write(`taken ${job.key}\n`)
  return new Promise<never>(() => undefined)
}, { concurrency: 1, batchSize: 4, batchWaitMs: 0 })
