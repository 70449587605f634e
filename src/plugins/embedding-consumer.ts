import fp from 'fastify-plugin'
import type { SavedJob } from '../cache/l1-snapshot.ts'
import { makeJobHandler } from '../embedding/job-handler.ts'
import { MemoryQueue } from '../queue/memory-queue.ts'

/**
 * Background embedding: this instance consumes the queue through the encoders into the cache
 * store. Registered after the encoders, so it closes before them: the durable queue hands unfinished
 * jobs back to Redis (another instance takes them), the in-process queue finishes its jobs, or
 * saves them with the L1 snapshot when there is one.
 */
export default fp(async (app) => {
  const { config, queue, embedder, store, log, snapshots } = app
  queue.start(makeJobHandler(embedder, store, log), {
    // Image batches wait on fetches, so many run at once; title batches only queue at the text
    // worker, where an inline title (miss_policy budget) would wait behind every one of them.
    concurrency: config.EMBED_CONCURRENCY, modalityConcurrency: { text: config.EMBED_TEXT_CONCURRENCY },
    batchSize: config.EMBED_BATCH_SIZE, batchWaitMs: 5,
  })
  // In-process queue with a snapshot file: unfinished jobs are saved with the L1 snapshot at
  // shutdown and re-queued here at start, instead of being lost or holding the shutdown.
  const memory = queue instanceof MemoryQueue && config.L1_SNAPSHOT_PATH !== '' ? queue : undefined
  let closingJobs: readonly SavedJob[] | undefined // once close began, the queue has dropped its waiting jobs
  if (memory) {
    snapshots.jobsToSave = () => closingJobs ?? memory.snapshot()
    if (snapshots.savedJobs.length > 0) {
      const requeued = await memory.restore(snapshots.savedJobs)
      log.info({ saved: snapshots.savedJobs.length, requeued }, 'background jobs from the snapshot re-queued')
    }
  }
  const timeoutMs = Math.min(10_000, config.SHUTDOWN_TIMEOUT_MS / 2)
  app.addHook('onClose', async () => {
    if (memory) closingJobs = memory.snapshot()
    await queue.close({ drain: app.redis === null && !memory, timeoutMs })
  })
}, { name: 'embedding-consumer', dependencies: ['config', 'queue', 'encoders', 'cache-store'] })
