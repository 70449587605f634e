// One modality's consumers of the durable queue: `concurrency` read loops, each on its own
// connection (XREADGROUP BLOCK holds a connection), sharing the maintenance duties (promoting due
// retries, reclaiming a crashed instance's entries).
import type { Redis } from 'ioredis'
import { backoffDelayMs, type BackoffOptions } from './backoff.ts'
import { JobTally } from './job-tally.ts'
import type { RedisCaller } from './lua-script.ts'
import type { QueueKeys } from './redis-keys.ts'
import { PROMOTE, PRUNE_CONSUMERS, RECLAIM, SETTLE } from './redis-scripts.ts'
import { runBatch } from './run-batch.ts'
import { parseReadReply, parseReclaimReply, type StreamEntry } from './stream-entries.ts'
import type { ConsumeOptions, EmbedHandler, JobOutcome, Modality, QueueMetrics } from './types.ts'

export type ReaderConnection = Pick<Redis, 'call' | 'disconnect'>

export interface StreamConsumerDeps {
  readonly redis: RedisCaller
  /** Opens one more connection for a read loop. */
  readonly openReader: () => ReaderConnection
  readonly keys: QueueKeys
  readonly group: string
  readonly consumer: string
  readonly modality: Modality
  readonly handler: EmbedHandler
  readonly consume: ConsumeOptions
  readonly maxAttempts: number
  readonly backoff: BackoffOptions
  readonly pendingTtlMs: number
  readonly negativeTtlMs: number
  readonly claimIdleMs: number
  /** Consumers (of any instance) idle this long and holding nothing are deleted from the group. */
  readonly pruneIdleMs: number
  readonly maintenanceIntervalMs: number
  readonly pollMs: number
  readonly metrics: QueueMetrics
  readonly random?: () => number
}

type Mode = 'run' | 'drain' | 'stop'

/** Backoff of a read loop while Redis is unreachable. */
const OUTAGE_BACKOFF: BackoffOptions = { baseMs: 100, maxMs: 5_000 }

export class StreamConsumer {
  private readonly loops: Promise<void>[] = []
  private readonly readers: ReaderConnection[] = []
  private mode: Mode = 'run'
  private groupReady = false
  private nextMaintenanceAt = 0
  private nextPruneAt = 0
  private claimCursor = '0-0'
  /** Wakes loops sleeping through an outage when the consumer stops, so no timer outlives close(). */
  private readonly stopped = new AbortController()

  constructor(private readonly deps: StreamConsumerDeps) {}

  start(): void {
    for (let i = 0; i < this.deps.consume.concurrency; i++) {
      const reader = this.deps.openReader()
      this.readers.push(reader)
      this.loops.push(this.loop(reader))
    }
  }

  /**
   * drain: keep handling until a read finds nothing; otherwise finish the batch in hand only.
   * After `timeoutMs` the loops are abandoned: their unsettled entries stay in this consumer's
   * pending list and are reclaimed by another instance after `claimIdleMs`.
   */
  async stop(drain: boolean, timeoutMs: number): Promise<void> {
    this.mode = drain ? 'drain' : 'stop'
    // Interrupts a blocked XREADGROUP. An entry delivered at that very instant stays pending here
    // and is reclaimed like a crashed consumer's.
    if (!drain) {
      this.stopped.abort()
      this.disconnectReaders()
    }
    let timer: NodeJS.Timeout | undefined
    await Promise.race([Promise.all(this.loops), new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
    clearTimeout(timer)
    this.mode = 'stop'
    this.stopped.abort()
    this.disconnectReaders()
  }

  /** A method, not an inline comparison: `mode` changes while a loop awaits. */
  private stopping(): boolean {
    return this.mode === 'stop'
  }

  private pause(ms: number): Promise<void> {
    const signal = this.stopped.signal
    if (signal.aborted) return Promise.resolve()
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        signal.removeEventListener('abort', done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      signal.addEventListener('abort', done)
    })
  }

  private disconnectReaders(): void {
    for (const reader of this.readers) reader.disconnect()
  }

  private async loop(reader: ReaderConnection): Promise<void> {
    let failures = 0
    while (this.mode !== 'stop') {
      try {
        const found = await this.step(reader)
        failures = 0
        if (!found && this.mode === 'drain') return
      } catch (err) {
        if (this.stopping()) return
        this.deps.metrics.redisErrors.inc({ op: 'queue_consume' })
        if (err instanceof Error && err.message.startsWith('NOGROUP')) this.groupReady = false // Redis came back empty
        await this.pause(backoffDelayMs(++failures, OUTAGE_BACKOFF, this.deps.random))
      }
    }
  }

  /** One read-handle-settle round; false when there was nothing to do. */
  private async step(reader: ReaderConnection): Promise<boolean> {
    await this.ensureGroup()
    if (Date.now() >= this.nextMaintenanceAt) {
      this.nextMaintenanceAt = Date.now() + this.deps.maintenanceIntervalMs
      await PROMOTE.run(this.deps.redis, [this.deps.keys.delayed(this.deps.modality), this.stream()], [1000])
      await this.pruneConsumers()
      const reclaimed = await this.reclaim()
      if (reclaimed.length > 0) {
        // A full claim suggests a dead consumer left more: keep claiming without waiting a tick.
        if (reclaimed.length >= this.deps.consume.batchSize) this.nextMaintenanceAt = 0
        await this.handle(reclaimed)
        return true
      }
    }
    const block = this.mode === 'run'
      ? Math.max(1, Math.min(this.deps.pollMs, this.nextMaintenanceAt - Date.now()))
      : undefined
    const entries = await this.read(reader, this.deps.consume.batchSize, block)
    if (entries.length === 0) return false
    if (this.mode === 'run') await this.topUp(reader, entries)
    await this.handle(entries)
    return true
  }

  /** Micro-batching: a partial batch waits up to batchWaitMs for more entries of its modality. */
  private async topUp(reader: ReaderConnection, entries: StreamEntry[]): Promise<void> {
    const deadline = Date.now() + this.deps.consume.batchWaitMs
    while (entries.length < this.deps.consume.batchSize && this.mode === 'run') {
      const wait = deadline - Date.now()
      if (wait < 1) return
      try {
        entries.push(...await this.read(reader, this.deps.consume.batchSize - entries.length, wait))
      } catch {
        // The reader was closed (stop) or Redis went away: the batch in hand is still handled.
        this.deps.metrics.redisErrors.inc({ op: 'queue_consume' })
        return
      }
    }
  }

  private async read(reader: ReaderConnection, count: number, blockMs: number | undefined): Promise<StreamEntry[]> {
    const block = blockMs === undefined ? [] : ['BLOCK', Math.ceil(blockMs)]
    const reply = await reader.call('XREADGROUP', 'GROUP', this.deps.group, this.deps.consumer,
      'COUNT', count, ...block, 'STREAMS', this.stream(), '>')
    const { entries, malformed } = parseReadReply(reply)
    if (malformed.length > 0) await this.discard(malformed.map((m) => m.id))
    return entries
  }

  private async reclaim(): Promise<StreamEntry[]> {
    const reply = await RECLAIM.run(this.deps.redis, [this.stream()],
      [this.deps.group, this.deps.consumer, this.deps.claimIdleMs, this.claimCursor, this.deps.consume.batchSize])
    const { entries, malformed, cursor } = parseReclaimReply(reply)
    this.claimCursor = cursor
    if (malformed.length > 0) await this.discard(malformed.map((m) => m.id))
    return entries
  }

  /** Dead instances leave their (unique) consumer names behind once their entries were reclaimed. */
  private async pruneConsumers(): Promise<void> {
    if (Date.now() < this.nextPruneAt) return
    this.nextPruneAt = Date.now() + Math.min(60_000, this.deps.pruneIdleMs)
    await PRUNE_CONSUMERS.run(this.deps.redis, [this.stream()], [this.deps.group, this.deps.pruneIdleMs, ''])
  }

  private async discard(ids: string[]): Promise<void> {
    await this.deps.redis.call('XACK', this.stream(), this.deps.group, ...ids)
    await this.deps.redis.call('XDEL', this.stream(), ...ids)
  }

  private async ensureGroup(): Promise<void> {
    if (this.groupReady) return
    try {
      // From id 0: jobs added before any consumer group existed are not skipped.
      await this.deps.redis.call('XGROUP', 'CREATE', this.stream(), this.deps.group, '0', 'MKSTREAM')
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('BUSYGROUP')) throw err
    }
    this.groupReady = true
  }

  private async handle(entries: StreamEntry[]): Promise<void> {
    const { modality } = this.deps
    // Each delivery beyond the first means a consumer died or stalled on the job: count it as a
    // failed attempt so a job that kills workers cannot circulate for ever.
    const spent = entries.filter((e) => this.attemptOf(e) > this.deps.maxAttempts)
    const runnable = entries.filter((e) => this.attemptOf(e) <= this.deps.maxAttempts)
    const outcomes = runnable.length === 0
      ? []
      : await runBatch(this.deps.handler, runnable.map((e) => ({ key: e.key, modality, input: e.input })))
    const crashed: JobOutcome = { ok: false, permanent: true, reason: 'abandoned by crashed or stalled consumers' }
    await this.settle([
      ...runnable.map((entry, i) => ({ entry, outcome: outcomes[i] ?? crashed })),
      ...spent.map((entry) => ({ entry, outcome: crashed })),
    ])
  }

  private attemptOf(entry: StreamEntry): number {
    return entry.attempt + entry.deliveries - 1
  }

  private async settle(results: Array<{ entry: StreamEntry; outcome: JobOutcome }>): Promise<void> {
    const { keys, modality } = this.deps
    const tally = new JobTally()
    const scriptKeys = [this.stream(), keys.delayed(modality)]
    const args: Array<string | number> = [this.deps.group, this.deps.pendingTtlMs, this.deps.negativeTtlMs]
    const labels: Array<'done' | 'retried' | 'failed'> = []
    for (const { entry, outcome } of results) {
      scriptKeys.push(keys.pending(entry.key), keys.negative(entry.key))
      const attempt = this.attemptOf(entry)
      if (outcome.ok) {
        args.push(entry.id, 'ok', 0, '')
        labels.push('done')
      } else if (!outcome.permanent && attempt < this.deps.maxAttempts) {
        const member = JSON.stringify({ key: entry.key, input: entry.input, attempt: attempt + 1 })
        args.push(entry.id, 'retry', backoffDelayMs(attempt, this.deps.backoff, this.deps.random), member)
        labels.push('retried')
      } else {
        args.push(entry.id, 'fail', 0, outcome.reason || 'failed')
        labels.push('failed')
      }
    }
    const reply = await SETTLE.run(this.deps.redis, scriptKeys, args)
    const settled: unknown[] = Array.isArray(reply) ? reply : []
    // Only what this consumer settled is counted: a late finisher of a reclaimed job counts nothing.
    labels.forEach((label, i) => { if (settled[i] === 1) tally.add(modality, label) })
    tally.flush(this.deps.metrics)
  }

  private stream(): string {
    return this.deps.keys.stream(this.deps.modality)
  }
}
