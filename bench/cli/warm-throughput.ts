import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { loadBundle } from '../../src/bundle/load-bundle.ts'
import { EncoderPool } from '../../src/embedding/encoder-pool.ts'
import { configureSharp, preprocessImage } from '../../src/modalities/image/index.ts'
import { startImageOrigin } from '../../test/helpers/image-origin.ts'
import { MODEL_DIR, RESULTS_DIR, SAMPLE_DIR, ctrserve, machine, mustSucceed } from './common.ts'

// `ctrserve warm` throughput against the raw image-encoder throughput, in the same run, with the
// same encoder settings (worker threads, ORT threads, micro-batch size) and a local origin.
//   npx tsx bench/cli/warm-throughput.ts [--items 1500] [--workers 1] [--ort-threads 1] [--batch 16]
// Raw: already-preprocessed tensors straight into EncoderPool.embedImages, enough calls in flight
// to keep every worker busy (images/s). Warm: the real command on the sample's items (fetch over
// HTTP, decode, resize, both encoders, L1 snapshot), image embeddings done per second of warm.
// The raw figure is measured before and after warm; the ratio uses their mean (shared machine).

interface WarmJson { seconds: number; jobs: { image: { done: number }; text: { done: number } }; failures: Record<string, number> }

async function rawEncoder(o: { workers: number; ortThreads: number; batch: number; images: number }): Promise<number> {
  const bundle = await loadBundle(MODEL_DIR)
  const enc = bundle.manifest.encoders.image
  configureSharp()
  const pool = new EncoderPool({
    kind: 'image', modelPath: join(bundle.dir, enc.file), intraOpThreads: o.ortThreads, inputName: enc.input.name,
    outputName: enc.output.name, dim: enc.output.dim, imageShape: [3, enc.input.height, enc.input.width],
  }, o.workers)
  try {
    await pool.ready()
    const files = readdirSync(join(SAMPLE_DIR, 'images')).slice(0, o.batch)
    const per = 3 * enc.input.height * enc.input.width
    const batch = new Float32Array(o.batch * per)
    for (let i = 0; i < o.batch; i++) {
      const img = await preprocessImage(readFileSync(join(SAMPLE_DIR, 'images', files[i % files.length] as string)), enc.input)
      batch.set(img.tensor, i * per)
    }
    await pool.embedImages(o.batch, batch.slice()) // warm-up: first run allocates
    const calls = Math.ceil(o.images / o.batch)
    const inFlight = 2 * o.workers
    const t0 = performance.now()
    let next = 0
    const lane = async (): Promise<void> => {
      while (next < calls) { next++; await pool.embedImages(o.batch, batch.slice()) }
    }
    await Promise.all(Array.from({ length: inFlight }, lane))
    return (calls * o.batch) / ((performance.now() - t0) / 1000)
  } finally {
    await pool.close()
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    items: { type: 'string', default: '1500' }, workers: { type: 'string', default: '1' },
    'ort-threads': { type: 'string', default: '1' }, batch: { type: 'string', default: '16' },
  } })
  const o = { items: Number(values.items), workers: Number(values.workers), ortThreads: Number(values['ort-threads']), batch: Number(values.batch) }
  const t0 = performance.now()
  const load0 = loadavg()[0] ?? 0
  const dir = mkdtempSync(join(tmpdir(), 'ctrserve-bench-warm-'))
  const origin = await startImageOrigin(SAMPLE_DIR)
  try {
    const rawBefore = await rawEncoder({ ...o, images: Math.min(o.items, 640) })
    process.stderr.write(`raw image encoder (before): ${rawBefore.toFixed(1)} images/s\n`)
    const items = readFileSync(join(SAMPLE_DIR, 'items.jsonl'), 'utf8').split('\n').filter((l) => l.trim()).slice(0, o.items)
    writeFileSync(join(dir, 'items.jsonl'), `${items.join('\n')}\n`)
    const args = ['warm', '--input', join(dir, 'items.jsonl'), '--snapshot', join(dir, 'l1.snap'), '--base-url', origin.baseUrl,
      '--workers', String(o.workers), '--ort-threads', String(o.ortThreads), '--batch', String(o.batch),
      '--summary-json', join(dir, 'w.json'), '--progress-interval', '3600']
    const run = await ctrserve(args)
    mustSucceed('warm', run)
    process.stderr.write(run.stdout)
    const w = JSON.parse(readFileSync(join(dir, 'w.json'), 'utf8')) as WarmJson
    const rawAfter = await rawEncoder({ ...o, images: Math.min(o.items, 640) })
    process.stderr.write(`raw image encoder (after): ${rawAfter.toFixed(1)} images/s\n`)
    const warmRate = w.jobs.image.done / w.seconds
    const raw = (rawBefore + rawAfter) / 2
    const report = {
      bench: 'cli-warm', date: new Date().toISOString(),
      machine: { ...machine(), loadavg1mAtStart: +load0.toFixed(2), loadavg1mAtEnd: +(loadavg()[0] ?? 0).toFixed(2) },
      settings: o,
      rawEncoderImagesPerSecond: { before: +rawBefore.toFixed(1), after: +rawAfter.toFixed(1), mean: +raw.toFixed(1) },
      warm: { imagesDone: w.jobs.image.done, textsDone: w.jobs.text.done, seconds: +w.seconds.toFixed(2),
        imagesPerSecond: +warmRate.toFixed(1), wallSecondsWithStartup: +run.seconds.toFixed(1), failures: w.failures },
      ratio: +(warmRate / raw).toFixed(3), target: 0.85, meetsTarget: warmRate / raw >= 0.85,
      command: `ctrserve ${args.join(' ').replaceAll(dir, '$TMP').replace(origin.baseUrl, '$ORIGIN')}`,
      totalSeconds: +((performance.now() - t0) / 1000).toFixed(1),
    }
    mkdirSync(RESULTS_DIR, { recursive: true })
    writeFileSync(join(RESULTS_DIR, 'cli-warm.json'), `${JSON.stringify(report, null, 2)}\n`)
    const md = [
      '# ctrserve warm: throughput against the raw image encoder',
      '',
      `${report.date}; ${String(report.machine.cpus)} CPUs (${String(report.machine.cpu)}), node ${process.version}; 1-min load average ${load0.toFixed(2)} at start, ${(loadavg()[0] ?? 0).toFixed(2)} at end (shared machine).`,
      `Settings: ${o.workers} image-encoder worker(s), ${o.ortThreads} ORT thread(s) each, micro-batch ${o.batch}; ${o.items} sample items from a local HTTP origin. Generated by \`npx tsx bench/cli/warm-throughput.ts\`.`,
      '',
      '| measure | images/s |',
      '|---|---:|',
      `| raw image encoder, before warm (preprocessed tensors, ${2 * o.workers} calls in flight) | ${rawBefore.toFixed(1)} |`,
      `| raw image encoder, after warm | ${rawAfter.toFixed(1)} |`,
      `| ctrserve warm (fetch + decode + image and text encoders + store), ${w.jobs.image.done} images + ${w.jobs.text.done} titles in ${w.seconds.toFixed(1)} s | ${warmRate.toFixed(1)} |`,
      '',
      `Warm / raw (mean of before and after): **${(100 * report.ratio).toFixed(1)}%** (target ≥ 85%: ${report.meetsTarget ? 'met' : 'NOT met'}).`,
      '',
    ].join('\n')
    writeFileSync(join(RESULTS_DIR, 'cli-warm.md'), md)
    process.stdout.write(md)
  } finally {
    await origin.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
