import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { loadConfig, usesRedis, type Config } from '../config.ts'
import { predictPlugin, queuePlugin, registerEmbedding, registerScoring } from '../plugins/index.ts'
import { LineSink } from '../batch/line-sink.ts'
import { countRows, readRows } from '../batch/row-reader.ts'
import { RowValidator } from '../batch/rows.ts'
import { type ScoreSummary, emptySources, hitRate, score } from '../batch/score.ts'
import { UsageError, intOption, offlineApp, parseShard, pct, stderrLogger, waitForRedis, writeJson, type Shard } from './common.ts'
import type { Command } from './main.ts'
import { Progress } from './progress.ts'

const HELP = `usage: ctrserve score --input FILE --output FILE [options]

Score a file of rows offline with the server's prediction path (PredictService, as POST /predict):
one JSON line per row with the fields of a /predict prediction ({id, ctr, sources}), in input order.
Rows are streamed (constant memory); consecutive rows with the same context share one head run.

options:
  --input FILE          rows, JSONL or .csv: {"context": {...}, "item": {...}}, or a flat item with a
                        "context" field (CSV: dotted columns, context.categorical.device, categorical.publisher, …)
  --output FILE         predictions JSONL ('-' = stdout; the summary then goes to stderr)
  --shard i/n           score only the rows whose index % n == i (0-based), to split a file over n runs
  --policy P            oov (default): cache misses use the OOV vector, nothing is computed;
                        compute: misses are computed inline (the budget policy with --budget-ms)
  --budget-ms N         budget of one head run's computations with --policy compute (default 60000)
  --workers N           worker processes (default: the number of cores, ${availableParallelism()} here); each runs
                        'ctrserve score --shard' on its share, the parent merges their lines in input order
  --ort-threads N       intra-op threads of the head session in each process (default: $HEAD_INTRA_OP_THREADS)
  --batch N             most rows per head run (default 256)
  --in-flight N         head runs in flight per process (default 2; overlaps Redis round trips)
  --redis URL           read embeddings from Redis (default: $REDIS_URL)
  --snapshot FILE       load an L1 snapshot (from ctrserve warm) before scoring; it is not rewritten
  --base-url URL        prefix for relative image_url values (must match what warm used)
  --enqueue-misses      with --policy oov and Redis: put misses on the shared embedding queue, as the
                        server does, for the instances consuming it to compute (default: off)
  --max-invalid N       exit 3 when more than N rows are invalid (default 0)
  --model-dir DIR       bundle folder (default: $MODEL_DIR or models/ctr-synth)
  --summary-json FILE   also write the summary (rows/s, sources, hit rates, peak RSS) as JSON
  --progress-interval S seconds between progress lines when stderr is not a terminal (default 10)
  --verbose             log info lines
  -h, --help            this text

Exit: 0 done, 1 error, 2 usage, 3 too many invalid rows.
`

const OPTIONS = {
  input: { type: 'string' }, output: { type: 'string' }, shard: { type: 'string' }, policy: { type: 'string' },
  'budget-ms': { type: 'string' }, workers: { type: 'string' }, 'ort-threads': { type: 'string' }, batch: { type: 'string' },
  'in-flight': { type: 'string' }, redis: { type: 'string' }, snapshot: { type: 'string' }, 'base-url': { type: 'string' },
  'max-invalid': { type: 'string' }, 'model-dir': { type: 'string' }, 'summary-json': { type: 'string' },
  'progress-interval': { type: 'string' }, 'enqueue-misses': { type: 'boolean' }, verbose: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  // Internal: this process is a worker of a parent 'ctrserve score' (error lines, no progress, no summary text).
  child: { type: 'boolean' },
} as const

type Values = { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string }

const BIN = fileURLToPath(new URL('../../bin/ctrserve.js', import.meta.url))

interface Summary extends ScoreSummary {
  /** Scored rows per second of scoring (`seconds`: without runtime start-up; with workers, from the first merged line). */
  rowsPerSecond: number
  /** From the command's start to the end, start-up of the runtime(s) included. */
  wallSeconds: number
  hitRate: { image: number; text: number }
  /** Peak resident set of this process, and of all processes (parent + workers), in MiB. */
  peakRssMb: number
  peakRssTotalMb: number
  workers: number
  shard: string
  policy: string
}

function peakRssMb(): number {
  return process.resourceUsage().maxRSS / 1024
}

function finish(s: ScoreSummary, extra: { workers: number; shard: Shard; policy: string; startedAt: number; childRssMb?: number }): Summary {
  const own = peakRssMb()
  return {
    ...s,
    rowsPerSecond: s.seconds > 0 ? s.scored / s.seconds : 0,
    wallSeconds: (performance.now() - extra.startedAt) / 1000,
    hitRate: { image: hitRate(s.sources.image), text: hitRate(s.sources.text) },
    peakRssMb: own,
    peakRssTotalMb: own + (extra.childRssMb ?? 0),
    workers: extra.workers,
    shard: `${extra.shard.index}/${extra.shard.count}`,
    policy: extra.policy,
  }
}

function summaryText(s: Summary, output: string): string {
  const lines = [
    `score: ${s.scored} rows scored in ${s.seconds.toFixed(1)} s (${s.rowsPerSecond.toFixed(0)} rows/s; ${s.wallSeconds.toFixed(1)} s with start-up; ${s.workers} process${s.workers > 1 ? 'es' : ''}, shard ${s.shard}, policy ${s.policy}) → ${output}`,
  ]
  for (const m of ['image', 'text'] as const) {
    const c = s.sources[m]
    lines.push(`  ${m.padEnd(5)} hit rate ${pct(s.hitRate[m], 1)} (l1 ${c.l1}, l2 ${c.l2}, computed ${c.computed}, oov ${c.oov}, absent ${c.absent})`)
  }
  lines.push(`  head runs ${s.bodies} (${s.bodies > 0 ? (s.scored / s.bodies).toFixed(1) : '-'} rows each); peak RSS ${s.peakRssTotalMb.toFixed(0)} MiB`)
  if (s.invalid > 0) lines.push(`  invalid rows ${s.invalid}, e.g.`, ...s.invalidExamples.map((e) => `    ${e}`))
  if (s.warnings.length > 0) lines.push('  warnings:', ...s.warnings.map((w) => `    ${w}`))
  return `${lines.join('\n')}\n`
}

function configFor(v: Values): Config {
  const o: Partial<Record<keyof Config, string | number>> = { QUEUE_CAPACITY: 1 }
  if (v['model-dir']) o.MODEL_DIR = v['model-dir']
  if (v.redis) o.REDIS_URL = v.redis
  if (v['ort-threads']) o.HEAD_INTRA_OP_THREADS = v['ort-threads']
  // Offline `compute` scores whole batches inline: the serving bounds on inline work do not apply.
  if (v.policy === 'compute') Object.assign(o, { INLINE_MAX_ITEMS: 10_000, INLINE_CONCURRENCY: 10_000, MAX_BUDGET_MS: 60_000 })
  // The snapshot is loaded read-only below; the runtime must not rewrite it on close.
  o.L1_SNAPSHOT_PATH = ''
  return loadConfig(o)
}

export const scoreCommand: Command = {
  name: 'score',
  summary: 'score a JSONL/CSV file of rows offline into predictions JSONL (sharded, all cores)',
  async run(argv) {
    const { values } = parseArgs({ args: argv, options: OPTIONS })
    const v = values as Values
    if (v.help) { process.stdout.write(HELP); return 0 }
    try {
      if (!v.input) throw new UsageError('--input is required')
      if (!v.output) throw new UsageError('--output is required (\'-\' for stdout)')
      const policy = v.policy ?? 'oov'
      if (policy !== 'oov' && policy !== 'compute') throw new UsageError(`--policy must be oov or compute (got ${JSON.stringify(policy)})`)
      const shard = parseShard(v.shard)
      const workers = v.child ? 1 : intOption('workers', v.workers, availableParallelism())
      const opts: Opts = {
        input: v.input, output: v.output, shard, policy, workers,
        batch: intOption('batch', v.batch, 256), inFlight: intOption('in-flight', v['in-flight'], 2),
        budgetMs: intOption('budget-ms', v['budget-ms'], 60_000), maxInvalid: intOption('max-invalid', v['max-invalid'], 0, 0),
        progressIntervalS: intOption('progress-interval', v['progress-interval'], 10),
      }
      configFor(v) // validates the environment and options before any work
      return workers > 1 ? await runParent(v, opts) : await runSingle(v, opts)
    } catch (err) {
      if (err instanceof UsageError) { process.stderr.write(`ctrserve score: ${err.message}\n\n${HELP}`); return 2 }
      throw err
    }
  },
}

interface Opts {
  input: string; output: string; shard: Shard; policy: 'oov' | 'compute'; workers: number
  batch: number; inFlight: number; budgetMs: number; maxInvalid: number; progressIntervalS: number
}

function report(s: Summary, o: Opts, child: boolean): number {
  if (!child) (o.output === '-' ? process.stderr : process.stdout).write(summaryText(s, o.output))
  return !child && s.invalid > o.maxInvalid ? 3 : 0
}

async function runSingle(v: Values, o: Opts): Promise<number> {
  const startedAt = performance.now()
  const config = configFor(v)
  const child = v.child === true
  // Nothing here consumes the queue; misses are queued only on request, for the servers sharing Redis.
  const enqueueMisses = v['enqueue-misses'] === true
  if (enqueueMisses && !usesRedis(config) && !child) process.stderr.write('warn: --enqueue-misses without Redis has no effect (no one consumes the in-process queue)\n')
  const rt = await offlineApp(config, stderrLogger(v.verbose === true))
  await registerEmbedding(rt)
  await registerScoring(rt)
  // Misses go to the shared queue only when asked and shared; nothing here consumes it.
  const shareMisses = enqueueMisses && usesRedis(config)
  if (shareMisses) await rt.register(queuePlugin)
  await rt.register(predictPlugin, { misses: shareMisses ? 'queue' : 'nowhere' })
  await rt.ready()
  const sink = LineSink.open(o.output)
  let progress: Progress | undefined
  let summary: Summary
  try {
    if (rt.redis) await waitForRedis(rt.redis, config.REDIS_URL || config.REDIS_CLUSTER_NODES)
    if (v.snapshot) {
      const m = rt.bundle.manifest
      const r = await rt.store.l1.loadSnapshot(v.snapshot, { versions: { image: m.encoders.image.version, text: m.encoders.text.version } })
      if (!r.loaded) throw new Error(`snapshot not loaded: ${r.reason}`)
    }
    if (!child) {
      const total = Math.ceil(Math.max(0, (await countRows(o.input)) - o.shard.index) / o.shard.count)
      progress = new Progress({ label: 'score', total, unit: 'rows', intervalMs: o.progressIntervalS * 1000 })
    }
    const p = progress
    const validator = new RowValidator(config, rt.bundle.manifest)
    const s = await score(readRows(o.input), {
      predict: (body) => rt.predict.predict(body, Date.now()),
      check: (value) => validator.scoreRow(value, v['base-url']),
      write: (text) => sink.write(text),
    }, {
      batchSize: o.batch, shard: o.shard, inFlight: o.inFlight, emitErrors: child,
      options: o.policy === 'compute' ? { miss_policy: 'budget', budget_ms: o.budgetMs } : { miss_policy: 'oov' },
      ...(p ? { onRows: (n: number) => p.add(n) } : {}),
    })
    summary = finish(s, { workers: 1, shard: o.shard, policy: o.policy, startedAt })
  } finally {
    progress?.stop()
    await sink.close()
    await rt.close()
  }
  await writeJson(v['summary-json'], summary)
  return report(summary, o, child)
}

/** Worker k of W scores the parent's rows r with ((r − i) / n) mod W = k, i.e. shard (i + n·k)/(n·W). */
function childShard(parent: Shard, k: number, workers: number): string {
  return `${parent.index + parent.count * k}/${parent.count * workers}`
}

function forwardedArgs(v: Values): string[] {
  const out: string[] = []
  for (const name of ['input', 'policy', 'budget-ms', 'ort-threads', 'batch', 'in-flight', 'redis', 'snapshot', 'base-url', 'model-dir'] as const) {
    const value = v[name]
    if (typeof value === 'string') out.push(`--${name}`, value)
  }
  if (v.verbose) out.push('--verbose')
  if (v['enqueue-misses']) out.push('--enqueue-misses')
  return out
}

async function runParent(v: Values, o: Opts): Promise<number> {
  const t0 = performance.now()
  const dir = await mkdtemp(join(tmpdir(), 'ctrserve-score-'))
  const sink = LineSink.open(o.output)
  const total = Math.ceil(Math.max(0, (await countRows(o.input)) - o.shard.index) / o.shard.count)
  const progress = new Progress({ label: 'score', total, unit: 'rows', intervalMs: o.progressIntervalS * 1000 })
  const children: ChildProcess[] = []
  let firstLineAt: number | undefined
  const exits: Array<Promise<number>> = []
  let invalid = 0
  const invalidExamples: string[] = []
  try {
    for (let k = 0; k < o.workers; k++) {
      const args = [BIN, 'score', ...forwardedArgs(v), '--shard', childShard(o.shard, k, o.workers), '--output', '-',
        '--child', '--summary-json', join(dir, `${k}.json`)]
      const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
      children.push(c)
      exits.push(new Promise((resolve) => c.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)))))
    }
    // Round-robin over the workers' lines restores input order: worker k holds every W-th row.
    const iters = children.map((c) => createInterface({ input: c.stdout as NodeJS.ReadableStream, crlfDelay: Infinity })[Symbol.asyncIterator]())
    const ended = iters.map(() => false)
    let buffer = ''
    for (let k = 0; ended.some((e) => !e); k = (k + 1) % iters.length) {
      if (ended[k]) continue
      const next = await (iters[k] as AsyncIterator<string>).next()
      if (next.done === true) { ended[k] = true; continue }
      const line = next.value
      firstLineAt ??= performance.now()
      if (line.startsWith('{"error":')) {
        invalid++
        const e = (JSON.parse(line) as { error: { row: number; message: string } }).error
        if (invalidExamples.length < 5) invalidExamples.push(e.message)
      } else {
        buffer += `${line}\n`
      }
      progress.add(1)
      if (buffer.length > 1 << 16) { await sink.write(buffer); buffer = '' }
    }
    await sink.write(buffer)
    const codes = await Promise.all(exits)
    const failed = codes.findIndex((c) => c !== 0)
    if (failed >= 0) throw new Error(`worker ${failed} (shard ${childShard(o.shard, failed, o.workers)}) exited with code ${codes[failed]}`)
  } finally {
    progress.stop()
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM')
    await sink.close()
  }
  const parts = await Promise.all(children.map(async (_, k) => JSON.parse(await readFile(join(dir, `${k}.json`), 'utf8')) as Summary))
  await rm(dir, { recursive: true, force: true })
  const merged: ScoreSummary = {
    rows: 0, scored: 0, invalid, invalidExamples, sources: { image: emptySources(), text: emptySources() }, warnings: [], bodies: 0,
    // From the first merged line to the end: the workers' start-up (in parallel) is left out.
    seconds: (performance.now() - (firstLineAt ?? t0)) / 1000,
  }
  const warnings = new Set<string>()
  let childRssMb = 0
  for (const p of parts) {
    merged.rows += p.rows
    merged.scored += p.scored
    merged.bodies += p.bodies
    for (const m of ['image', 'text'] as const) for (const [src, n] of Object.entries(p.sources[m])) merged.sources[m][src as keyof typeof p.sources.image] += n
    for (const w of p.warnings) warnings.add(w)
    childRssMb += p.peakRssMb
  }
  merged.warnings = [...warnings].slice(0, 50)
  const summary = finish(merged, { workers: o.workers, shard: o.shard, policy: o.policy, startedAt: t0, childRssMb })
  await writeJson(v['summary-json'], summary)
  return report(summary, o, false)
}
