export type {
  CloseOptions, ConsumeOptions, EmbedHandler, EmbedJob, EmbedQueue, JobMetricOutcome, JobOutcome, Modality, QueueMetrics,
} from './types.ts'
export { MODALITIES } from './types.ts'
export { MemoryQueue, type MemoryQueueOptions } from './memory-queue.ts'
export { RedisQueue, uniqueConsumerName, type QueueConnection, type QueueRedis, type RedisQueueOptions } from './redis-queue.ts'
export { outcomeOf } from './run-batch.ts'
export { backoffDelayMs, type BackoffOptions } from './backoff.ts'
