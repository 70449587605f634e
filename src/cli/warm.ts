import { parseArgs } from 'node:util'
import { loadConfig, usesRedis, type Config } from '../config.ts'
import type { CacheRedis } from '../cache/redis-client.ts'
import { registerEmbedding } from '../plugins/index.ts'
import { countRows, readRows } from '../batch/row-reader.ts'
import { RowValidator } from '../batch/rows.ts'
import { type WarmSummary, failureRate, warm } from '../batch/warm.ts'
import { UsageError, intOption, offlineApp, pct, rateOption, redactUrl, stderrLogger, waitForRedis, writeJson } from './common.ts'
import type { Command } from './main.ts'
import { Progress } from './progress.ts'

const HELP = `usage: ctrserve warm --input FILE [options]

Compute the image and text embeddings of a catalogue before traffic arrives, through the server's
embedding service (encoder worker threads, micro-batches, per-host fetch limit), and write them to
the cache tier the server reads: Redis (--redis or REDIS_URL), or else an L1 snapshot file
(--snapshot or L1_SNAPSHOT_PATH) that a server started with the same L1_SNAPSHOT_PATH loads.
Keys already present are skipped, so a rerun after an interruption finishes the rest.

options:
  --input FILE             items, JSONL (the /predict item shape) or .csv (dotted columns:
                           id,image_url,title,categorical.publisher,numeric.age_hours; JSON for arrays)
  --redis URL              write to Redis (default: $REDIS_URL); key prefix from $REDIS_PREFIX
  --snapshot FILE          write an L1 snapshot (default: $L1_SNAPSHOT_PATH); needs an L1 big enough
  --l1-max-bytes N         L1 byte budget (default: $L1_MAX_BYTES); with --snapshot it must hold every vector
  --base-url URL           prefix for relative image_url values (e.g. images/1.jpg)
  --batch N                items per micro-batch (one encoder call per modality; default: $EMBED_BATCH_SIZE)
  --concurrency N          micro-batches in flight, so fetching and decoding overlap the encoders
                           (default: 4 × image workers + 4)
  --workers N              image-encoder worker threads (default: $EMBED_WORKERS)
  --ort-threads N          ORT intra-op threads per encoder worker (default: $ORT_INTRA_OP_THREADS)
  --host-concurrency N     concurrent fetches per image host (default: $IMAGE_HOST_CONCURRENCY)
  --retries N              attempts per key for transient failures (default 4)
  --max-failure-rate X     exit 3 when failed / considered exceeds X (default 0.01)
  --model-dir DIR          bundle folder (default: $MODEL_DIR or models/ctr-synth)
  --summary-json FILE      also write the summary as JSON
  --progress-interval S    seconds between progress lines when stderr is not a terminal (default 10)
  --verbose                log info lines
  -h, --help               this text

Other settings (IMAGE_ALLOWED_HOSTS, IMAGE_FETCH_TIMEOUT_MS, CACHE_TTL_SECONDS, …) come from the
environment as for the server; EMBED_NICE defaults to 0 here (encoders at normal priority). Exit: 0 done, 1 error, 2 usage, 3 failure rate over the threshold,
130 interrupted (the cache keeps what was written; rerun to finish).
`

function configFor(v: Record<string, string | boolean | undefined>): Config {
  const o: Partial<Record<keyof Config, string | number>> = {}
  const str = (k: string): string | undefined => (typeof v[k] === 'string' ? v[k] as string : undefined)
  if (str('model-dir')) o.MODEL_DIR = str('model-dir') as string
  if (str('redis')) o.REDIS_URL = str('redis') as string
  if (str('snapshot')) o.L1_SNAPSHOT_PATH = str('snapshot') as string
  if (str('l1-max-bytes')) o.L1_MAX_BYTES = str('l1-max-bytes') as string
  if (str('workers')) o.EMBED_WORKERS = str('workers') as string
  if (str('ort-threads')) o.ORT_INTRA_OP_THREADS = str('ort-threads') as string
  if (str('host-concurrency')) o.IMAGE_HOST_CONCURRENCY = str('host-concurrency') as string
  if (str('batch')) o.EMBED_BATCH_SIZE = str('batch') as string
  // Nothing consumes the background queue here: misses are computed explicitly.
  o.QUEUE_CAPACITY = 1
  // Embedding is this command's whole job: the encoder threads run at normal priority unless the
  // environment says otherwise (the server lowers them so that requests keep the cores).
  if (process.env.EMBED_NICE === undefined) o.EMBED_NICE = 0
  return loadConfig(o)
}

/**
 * Redis EXISTS for each key (one round trip: pipelined by the connection, per node on a cluster);
 * any error reads as "not there" (retried).
 */
function redisConfirm(redis: CacheRedis | null): ((keys: string[]) => Promise<boolean[]>) | undefined {
  if (!redis) return undefined
  return (keys) => Promise.all(keys.map((k) => redis.exists(k).then((n) => n === 1, () => false)))
}

function printSummary(s: WarmSummary, target: string, extra: string[]): void {
  const lines = [`warm: ${s.interrupted ? 'INTERRUPTED after' : 'finished'} ${s.rows} rows in ${s.seconds.toFixed(1)} s → ${target}`]
  for (const [m, t] of Object.entries(s.jobs)) {
    const rate = s.seconds > 0 ? (t.done / s.seconds).toFixed(1) : '-'
    lines.push(`  ${m.padEnd(5)} done ${t.done} (${rate}/s), skipped (already cached) ${t.skipped}, failed ${t.failed}, retried ${t.retried}`)
  }
  if (s.invalidRows > 0) lines.push(`  invalid rows ${s.invalidRows}`)
  const reasons = Object.entries(s.failures).sort((a, b) => b[1] - a[1])
  if (reasons.length > 0) {
    lines.push('  failures by reason:')
    for (const [r, n] of reasons) lines.push(`    ${r.padEnd(16)} ${String(n).padStart(8)}  e.g. ${s.examples[r] ?? ''}`)
  }
  lines.push(...extra.map((l) => `  ${l}`))
  process.stdout.write(`${lines.join('\n')}\n`)
}

export const warmCommand: Command = {
  name: 'warm',
  summary: 'compute the embeddings of an item file into Redis or an L1 snapshot (resumable)',
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        input: { type: 'string' }, redis: { type: 'string' }, snapshot: { type: 'string' }, 'l1-max-bytes': { type: 'string' },
        'base-url': { type: 'string' }, batch: { type: 'string' }, concurrency: { type: 'string' }, workers: { type: 'string' },
        'ort-threads': { type: 'string' }, 'host-concurrency': { type: 'string' }, retries: { type: 'string' },
        'max-failure-rate': { type: 'string' }, 'model-dir': { type: 'string' }, 'summary-json': { type: 'string' },
        'progress-interval': { type: 'string' }, verbose: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      },
    })
    if (values.help) { process.stdout.write(HELP); return 0 }
    try {
      if (!values.input) throw new UsageError('--input is required')
      intOption('batch', values.batch, 1)
      const config = configFor(values)
      if (!usesRedis(config) && !config.L1_SNAPSHOT_PATH) {
        throw new UsageError('nowhere to write: give --redis URL (or REDIS_URL, REDIS_CLUSTER_NODES) or --snapshot FILE (or L1_SNAPSHOT_PATH)')
      }
      return await runWarm(values.input, config, {
        concurrency: intOption('concurrency', values.concurrency, 4 * config.EMBED_WORKERS + 4),
        retries: intOption('retries', values.retries, 4),
        maxFailureRate: rateOption('max-failure-rate', values['max-failure-rate'], 0.01),
        progressIntervalS: intOption('progress-interval', values['progress-interval'], 10),
        verbose: values.verbose === true,
        ...(values['base-url'] ? { baseUrl: values['base-url'] } : {}),
        ...(values['summary-json'] ? { summaryJson: values['summary-json'] } : {}),
      })
    } catch (err) {
      if (err instanceof UsageError) { process.stderr.write(`ctrserve warm: ${err.message}\n\n${HELP}`); return 2 }
      throw err
    }
  },
}

interface RunOptions {
  concurrency: number
  retries: number
  maxFailureRate: number
  progressIntervalS: number
  verbose: boolean
  baseUrl?: string
  summaryJson?: string
}

async function runWarm(input: string, config: Config, o: RunOptions): Promise<number> {
  const log = stderrLogger(o.verbose)
  const total = await countRows(input)
  // Embedding only: no queue, no head, no routes.
  const rt = await offlineApp(config, log)
  await registerEmbedding(rt)
  await rt.ready()
  const stop = new AbortController()
  const onSigint = (): void => {
    if (stop.signal.aborted) return
    process.stderr.write('\nwarm: interrupted; finishing the batches in flight and saving (Ctrl-C again to abort)\n')
    stop.abort()
    // A second Ctrl-C ends the process at once: with no listener left, SIGINT's default action
    // applies (process.exit() here would tear down the encoder threads mid-run and abort in ORT).
    process.once('SIGINT', () => process.kill(process.pid, 'SIGINT'))
  }
  process.once('SIGINT', onSigint)
  let summary: WarmSummary
  const l1Before = rt.store.l1.size
  const target = config.REDIS_CLUSTER_NODES ? `redis cluster ${redactUrl(config.REDIS_CLUSTER_NODES)} (prefix ${config.REDIS_PREFIX})`
    : config.REDIS_URL ? `redis ${redactUrl(config.REDIS_URL)} (prefix ${config.REDIS_PREFIX})` : `L1 snapshot ${config.L1_SNAPSHOT_PATH}`
  let progress: Progress | undefined
  try {
    if (rt.redis) await waitForRedis(rt.redis, config.REDIS_URL || config.REDIS_CLUSTER_NODES)
    const validator = new RowValidator(config, rt.bundle.manifest)
    progress = new Progress({ label: 'warm', total, unit: 'rows', intervalMs: o.progressIntervalS * 1000 })
    const p = progress
    const fetchTimeout = config.IMAGE_FETCH_TIMEOUT_MS
    const confirm = redisConfirm(rt.redis)
    summary = await warm(readRows(input), {
      lookup: (keys, deadline) => rt.store.lookup(keys, deadline),
      embedder: rt.embedder,
      keyOf: rt.keyOf,
      check: (v) => validator.item(v, o.baseUrl),
      ...(confirm ? { confirm } : {}),
    }, {
      batchSize: config.EMBED_BATCH_SIZE,
      concurrency: o.concurrency,
      maxAttempts: o.retries,
      backoff: { baseMs: 500, maxMs: 10_000 },
      // Fetches of a batch queue behind the per-host limit; each fetch still has its own timeout.
      computeTimeoutMs: fetchTimeout * (1 + Math.ceil((o.concurrency * config.EMBED_BATCH_SIZE) / config.IMAGE_HOST_CONCURRENCY)) + 1000,
      lookupTimeoutMs: 5000,
      onRows: (n) => { p.add(n) },
      signal: stop.signal,
    })
  } finally {
    progress?.stop()
    process.off('SIGINT', onSigint)
    // Writes the snapshot when L1_SNAPSHOT_PATH is set (also after an interruption).
    await rt.close()
  }
  const extra: string[] = []
  let code = 0
  if (!usesRedis(config)) {
    const expected = l1Before + summary.jobs.image.done + summary.jobs.text.done
    const evicted = Math.max(0, expected - rt.store.l1.size)
    if (evicted > 0) {
      extra.push(`ERROR: ${evicted} vectors were evicted from L1 before the snapshot: raise --l1-max-bytes (now ${config.L1_MAX_BYTES})`)
      code = 1
    }
    extra.push(`snapshot: ${rt.store.l1.size} vectors (${(rt.store.l1.bytes / 2 ** 20).toFixed(1)} MiB charged) in ${config.L1_SNAPSHOT_PATH}`)
  }
  const rate = failureRate(summary)
  extra.push(`failure rate ${pct(rate * 1e6, 1e6)} (threshold ${pct(o.maxFailureRate * 1e6, 1e6)})`)
  if (code === 0 && rate > o.maxFailureRate) code = 3
  if (summary.interrupted) code = 130
  printSummary(summary, target, extra)
  await writeJson(o.summaryJson, { ...summary, failureRate: rate, target, exitCode: code })
  return code
}
