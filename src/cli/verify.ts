import { parseArgs } from 'node:util'
import { writeFile } from 'node:fs/promises'
import { loadBundle } from '../bundle/load-bundle.ts'
import { tinyWeightsAdvice } from '../onnx/tiny-weights.ts'
import { loadConfig } from '../config.ts'
import { createEncoderPools } from '../embedding/encoder-pools.ts'
import { Head } from '../fusion/head.ts'
import { SplitHead } from '../fusion/split-head.ts'
import { DiffCollector, formatTable } from '../verify/diff-stats.ts'
import { readJsonl, runParity } from '../verify/parity.ts'
import type { Command } from './main.ts'
import { CtrError } from '../errors.ts'

const HELP = `usage: ctrserve verify [options]

Recompute what the serving code computes and compare it with a reference, element-wise.
By default the reference is the bundle's parity fixtures (PyTorch outputs from raw inputs).

options:
  --model-dir DIR        bundle folder (default: $MODEL_DIR or models/ctr-synth)
  --predictions A B      compare two predictions JSONL files (from ctrserve score) by id instead
  --max-p99 X            fail when p99 |Δ| of the calibrated mean exceeds X (default 1e-6)
  --max-abs X            fail when max |Δ| of the calibrated mean exceeds X (default 1e-4)
  --max-encoder X        fail when max |Δ| of an encoder embedding or head output exceeds X (default 1e-4)
  --json FILE            also write the table as JSON
  -h, --help             this text
`

interface PredictionLine {
  id: string
  ctr: { mean: number; raw_mean: number; std: number; quantiles: Record<string, number> }
}

async function comparePredictions(a: string, b: string): Promise<DiffCollector> {
  const left = await readJsonl<PredictionLine>(a)
  const right = new Map((await readJsonl<PredictionLine>(b)).map((p) => [p.id, p]))
  const d = new DiffCollector()
  for (const p of left) {
    const q = right.get(p.id)
    if (!q) throw new CtrError('BAD_INPUT', [`${b} has no prediction with id ${p.id}`])
    d.add('mean (calibrated)', [p.ctr.mean], [q.ctr.mean])
    d.add('raw_mean', [p.ctr.raw_mean], [q.ctr.raw_mean])
    d.add('std', [p.ctr.std], [q.ctr.std])
    const names = Object.keys(p.ctr.quantiles)
    d.add('quantiles', names.map((n) => p.ctr.quantiles[n] as number), names.map((n) => q.ctr.quantiles[n] as number))
  }
  return d
}

export const verifyCommand: Command = {
  name: 'verify',
  summary: 'compare serving outputs with the bundle parity fixtures or another predictions file',
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv, allowPositionals: true,
      options: {
        'model-dir': { type: 'string' }, predictions: { type: 'boolean' },
        'max-p99': { type: 'string', default: '1e-6' }, 'max-abs': { type: 'string', default: '1e-4' },
        'max-encoder': { type: 'string', default: '1e-4' }, json: { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    })
    if (values.help) { process.stdout.write(HELP); return 0 }
    const maxP99 = Number(values['max-p99'])
    const maxAbs = Number(values['max-abs'])
    const maxEncoder = Number(values['max-encoder'])
    let diffs: DiffCollector
    const problems: string[] = []
    if (values.predictions) {
      const [a, b] = positionals
      if (!a || !b) throw new CtrError('BAD_INPUT', ['--predictions needs two files'])
      diffs = await comparePredictions(a, b)
    } else {
      const config = loadConfig(values['model-dir'] ? { MODEL_DIR: values['model-dir'] } : {})
      const bundle = await loadBundle(config.MODEL_DIR)
      // Parity holds with them; speed on Intel CPUs does not (README "Subnormal weights"): said, not failed.
      for (const [file, n] of Object.entries(bundle.tinyWeights)) {
        process.stdout.write(`warning: ${file} has ${n} ${tinyWeightsAdvice(bundle.dir)}\n`)
      }
      const { imagePool, textPool } = await createEncoderPools(bundle, { imageWorkers: 1, ortThreads: config.ORT_INTRA_OP_THREADS })
      const head = await Head.load(bundle, config.HEAD_INTRA_OP_THREADS)
      const split = await SplitHead.load(bundle, config.HEAD_INTRA_OP_THREADS)
      try {
        const r = await runParity({ bundle, imagePool, textPool, head, ...(split ? { split } : {}) })
        diffs = r.diffs
        process.stdout.write(`parity fixtures: ${r.fixtures}; pixel digest mismatches: ${r.pixelDigestMismatches.length}; token id mismatches: ${r.tokenMismatches.length}\n`)
        if (r.pixelDigestMismatches.length > 0) problems.push(`pixel digests differ for ${r.pixelDigestMismatches.slice(0, 5).join(', ')}`)
        if (r.tokenMismatches.length > 0) problems.push(`token ids differ for ${r.tokenMismatches.slice(0, 5).join(', ')}`)
      } finally {
        await Promise.all([imagePool.close(), textPool.close(), head.close(), split?.close()])
      }
    }
    const table = diffs.table()
    process.stdout.write(`${formatTable(table)}\n`)
    if (values.json) await writeFile(values.json, JSON.stringify(table, null, 2))
    for (const row of table) {
      if (row.output === 'mean (calibrated)') {
        if (row.p99 > maxP99) problems.push(`calibrated mean p99 |Δ| ${row.p99.toExponential(2)} > ${maxP99}`)
        if (row.max > maxAbs) problems.push(`calibrated mean max |Δ| ${row.max.toExponential(2)} > ${maxAbs}`)
      } else if (row.max > maxEncoder) {
        problems.push(`${row.output} max |Δ| ${row.max.toExponential(2)} > ${maxEncoder}`)
      }
    }
    if (problems.length > 0) {
      process.stdout.write(`FAIL\n${problems.map((p) => `  - ${p}`).join('\n')}\n`)
      return 1
    }
    process.stdout.write('OK: within thresholds\n')
    return 0
  },
}
