import { writeFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { loadBundle } from '../src/bundle/load-bundle.ts'
import { FieldFeatures } from '../src/fusion/field-features.ts'
import { Head, type HeadInputs } from '../src/fusion/head.ts'
import { MEAN, mixtureStatsOf } from '../src/mdn/batch-stats.ts'
import { num, parseArgs, str } from './lib/args.ts'
import { readLines } from '../support/jsonl.ts'
import { summarize } from './lib/percentiles.ts'
import type { PredictBody } from './lib/sample.ts'

// Scenario 7, the compute ceiling: the head and the mixture statistics alone, in-process, no
// HTTP, no cache, one thread (the server runs the head on its main thread). Inputs are the
// workload's real field rows with OOV embedding rows (the head's cost does not depend on values).

export interface CeilingResult {
  itemsPerRequest: number
  iterations: number
  seconds: number
  /** Batches of `itemsPerRequest` per second through head + statistics. */
  requestsPerSecond: number
  /** Same, with the feature matrix assembly (field hashing, row copies) included. */
  requestsPerSecondWithAssembly: number
  /** head + statistics per batch. */
  totalMs: ReturnType<typeof summarize>
  headMs: ReturnType<typeof summarize>
  statsMs: ReturnType<typeof summarize>
  assembleMs: ReturnType<typeof summarize>
}

export async function measureCeiling(modelDir: string, bodies: readonly PredictBody[], seconds: number, maxIterations: number): Promise<CeilingResult> {
  const bundle = await loadBundle(modelDir)
  const head = await Head.load(bundle, 1)
  const fields = new FieldFeatures(bundle)
  const stats = mixtureStatsOf(bundle.manifest)
  let rows = new Float64Array(0)
  const assemble = (body: PredictBody): HeadInputs => {
    const n = body.items.length
    const di = bundle.oov.image.length
    const dt = bundle.oov.text.length
    const df = bundle.fieldsDim
    const x = { n, image: new Float32Array(n * di), imageOov: new Float32Array(n), text: new Float32Array(n * dt), textOov: new Float32Array(n), fields: new Float32Array(n * df) }
    const ctx = new Float32Array(df)
    const warnings = new Set<string>()
    fields.fill(ctx, 0, 'context', body.context, 'body/context', warnings)
    body.items.forEach((it, i) => {
      x.image.set(bundle.oov.image, i * di)
      x.text.set(bundle.oov.text, i * dt)
      x.fields.set(ctx, i * df)
      fields.fill(x.fields, i * df, 'item', it, `body/items/${i}`, warnings)
    })
    return x
  }
  const inputs = bodies.slice(0, 50).map(assemble)
  // Warm-up: JIT and ORT's first runs.
  for (let i = 0; i < 20; i++) await head.run(inputs[i % inputs.length] as HeadInputs)
  const headMs: number[] = []
  const statsMs: number[] = []
  const assembleMs: number[] = []
  const totalMs: number[] = []
  let sink = 0
  const t0 = performance.now()
  let i = 0
  for (; i < maxIterations && performance.now() - t0 < seconds * 1000; i++) {
    const body = bodies[i % bodies.length] as PredictBody
    const a0 = performance.now()
    const x = i % 2 === 0 ? assemble(body) : (inputs[i % inputs.length] as HeadInputs)
    const a1 = performance.now()
    const out = await head.run(x)
    const h1 = performance.now()
    if (rows.length < x.n * stats.width) rows = new Float64Array(x.n * stats.width)
    stats.compute(out.pi, out.mu, out.sigma, x.n, rows)
    sink += rows[MEAN] as number
    const s1 = performance.now()
    if (i % 2 === 0) assembleMs.push(a1 - a0)
    headMs.push(h1 - a1)
    statsMs.push(s1 - h1)
    totalMs.push(s1 - a1)
  }
  const elapsed = (performance.now() - t0) / 1000
  await head.close()
  if (!Number.isFinite(sink)) throw new Error('non-finite CTR in the ceiling loop')
  const h = summarize(headMs)
  const s = summarize(statsMs)
  const a = summarize(assembleMs)
  return {
    itemsPerRequest: bodies[0]?.items.length ?? 0, iterations: i, seconds: Math.round(elapsed * 100) / 100,
    requestsPerSecond: Math.round(1000 / (h.mean + s.mean)),
    requestsPerSecondWithAssembly: Math.round(1000 / (h.mean + s.mean + a.mean)),
    totalMs: summarize(totalMs), headMs: h, statsMs: s, assembleMs: a,
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const bodies = readLines(str(args, 'bodies')).map((l) => JSON.parse(l) as PredictBody)
  const r = await measureCeiling(str(args, 'model', 'models/ctr-synth'), bodies, num(args, 'seconds', 15), num(args, 'max-iterations', 100_000))
  const out = args.get('out')
  if (out) writeFileSync(out, JSON.stringify(r, null, 2))
  else process.stdout.write(`${JSON.stringify(r)}\n`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main()
