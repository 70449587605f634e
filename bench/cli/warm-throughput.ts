import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { rawImageEncoderRate } from '../lib/raw-encoder.ts'
import { startImageOrigin } from '../../support/image-origin.ts'
import { MODEL_DIR, RESULTS_DIR, SAMPLE_DIR, ctrserve, machine, mustSucceed } from '../../support/cli.ts'

// `ctrserve warm` throughput against the raw image-encoder throughput, in the same run, with the
// same encoder settings (worker threads, ORT threads, micro-batch size) and a local origin.
//   npx tsx bench/cli/warm-throughput.ts [--items 1500] [--repeat 2] [--rounds 3] [--workers 1] [--ort-threads 1] [--batch 16]
// Raw: already-preprocessed tensors straight into EncoderPool.embedImages, enough calls in flight
// to keep every worker busy (images/s). Warm: the real command on the sample's items (fetch over
// HTTP, decode, resize, both encoders, L1 snapshot), image embeddings done per second of warm.
// The raw figure is measured just before and just after each warm run and the ratio uses their
// mean; several rounds, median reported (the machine is shared and its load moves).

interface WarmJson { seconds: number; jobs: { image: { done: number }; text: { done: number } }; failures: Record<string, number> }

function rawEncoder(o: { workers: number; ortThreads: number; batch: number; images: number }): Promise<number> {
  return rawImageEncoderRate({ ...o, modelDir: MODEL_DIR, sampleDir: SAMPLE_DIR })
}

/** The sample's items `repeat` times, each copy with its own image URL (query) and title, so every key is new. */
function items(count: number, repeat: number): string[] {
  const base = readFileSync(join(SAMPLE_DIR, 'items.jsonl'), 'utf8').split('\n').filter((l) => l.trim()).slice(0, count)
  const out: string[] = []
  for (let r = 0; r < repeat; r++) {
    for (const line of base) {
      const it = JSON.parse(line) as { id: string; image_url?: string; title?: string }
      out.push(JSON.stringify({ ...it, id: `${it.id}-${r}`, image_url: `${it.image_url ?? ''}?copy=${r}`, title: `${it.title ?? ''} ${r}` }))
    }
  }
  return out
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    items: { type: 'string', default: '1500' }, repeat: { type: 'string', default: '2' }, rounds: { type: 'string', default: '3' },
    workers: { type: 'string', default: '1' }, 'ort-threads': { type: 'string', default: '1' }, batch: { type: 'string', default: '16' },
  } })
  const o = {
    items: Number(values.items), repeat: Number(values.repeat), rounds: Number(values.rounds),
    workers: Number(values.workers), ortThreads: Number(values['ort-threads']), batch: Number(values.batch),
  }
  const t0 = performance.now()
  const load0 = loadavg()[0] ?? 0
  const dir = mkdtempSync(join(tmpdir(), 'ctrserve-bench-warm-'))
  const origin = await startImageOrigin(SAMPLE_DIR)
  try {
    const lines = items(o.items, o.repeat)
    writeFileSync(join(dir, 'items.jsonl'), `${lines.join('\n')}\n`)
    const rounds: Array<{ rawBefore: number; warm: number; rawAfter: number; ratio: number; seconds: number; done: number; texts: number }> = []
    let command = ''
    for (let round = 0; round < o.rounds; round++) {
      const rawBefore = await rawEncoder({ ...o, images: 640 })
      const snapshot = join(dir, `l1-${round}.snap`)
      const args = ['warm', '--input', join(dir, 'items.jsonl'), '--snapshot', snapshot, '--base-url', origin.baseUrl,
        '--workers', String(o.workers), '--ort-threads', String(o.ortThreads), '--batch', String(o.batch),
        '--summary-json', join(dir, 'w.json'), '--progress-interval', '3600']
      command = `ctrserve ${args.join(' ').replaceAll(dir, '$TMP').replace(origin.baseUrl, '$ORIGIN')}`
      const run = await ctrserve(args)
      mustSucceed('warm', run)
      const w = JSON.parse(readFileSync(join(dir, 'w.json'), 'utf8')) as WarmJson
      if (w.jobs.image.done !== lines.length) throw new Error(`warm embedded ${w.jobs.image.done} of ${lines.length} images: ${JSON.stringify(w.failures)}`)
      rmSync(snapshot, { force: true })
      const rawAfter = await rawEncoder({ ...o, images: 640 })
      const warmRate = w.jobs.image.done / w.seconds
      rounds.push({
        rawBefore: +rawBefore.toFixed(1), warm: +warmRate.toFixed(1), rawAfter: +rawAfter.toFixed(1),
        ratio: +(warmRate / ((rawBefore + rawAfter) / 2)).toFixed(3), seconds: +w.seconds.toFixed(2), done: w.jobs.image.done, texts: w.jobs.text.done,
      })
      process.stderr.write(`round ${round + 1}: raw ${rawBefore.toFixed(1)} / warm ${warmRate.toFixed(1)} / raw ${rawAfter.toFixed(1)} images/s\n`)
    }
    const ratio = median(rounds.map((r) => r.ratio))
    const report = {
      bench: 'cli-warm', date: new Date().toISOString(),
      machine: { ...machine(), loadavg1mAtStart: +load0.toFixed(2), loadavg1mAtEnd: +(loadavg()[0] ?? 0).toFixed(2) },
      settings: o, rounds, medianRatio: ratio, target: 0.85, meetsTarget: ratio >= 0.85, command,
      totalSeconds: +((performance.now() - t0) / 1000).toFixed(1),
    }
    mkdirSync(RESULTS_DIR, { recursive: true })
    writeFileSync(join(RESULTS_DIR, 'cli-warm.json'), `${JSON.stringify(report, null, 2)}\n`)
    const md = [
      '# ctrserve warm: throughput against the raw image encoder',
      '',
      `${report.date}; ${report.machine.cpus} CPUs (${report.machine.cpu}), node ${process.version}; 1-min load average ${load0.toFixed(2)} at start, ${(loadavg()[0] ?? 0).toFixed(2)} at end (shared machine: other jobs were running).`,
      `Settings: ${o.workers} image-encoder worker(s), ${o.ortThreads} ORT thread(s) each, micro-batch ${o.batch}; ${lines.length} items (the ${o.items} sample items × ${o.repeat}, each copy a distinct URL and title) from a local HTTP origin. Generated by \`npx tsx bench/cli/warm-throughput.ts\`.`,
      'Raw: preprocessed tensors straight into the image EncoderPool (same settings, 2 calls per worker in flight), measured just before and just after each warm run. Warm: the real command (fetch over HTTP, decode, resize, image and text encoders, store), image embeddings per second of the warm loop (runtime start-up excluded).',
      '',
      '| round | raw before (images/s) | warm (images/s) | raw after (images/s) | warm / mean raw |',
      '|---:|---:|---:|---:|---:|',
      ...rounds.map((r, i) => `| ${i + 1} | ${r.rawBefore} | ${r.warm} (${r.done} images + ${r.texts} titles in ${r.seconds} s) | ${r.rawAfter} | ${(100 * r.ratio).toFixed(1)}% |`),
      '',
      `Median warm / raw: **${(100 * ratio).toFixed(1)}%** (target ≥ 85%: ${report.meetsTarget ? 'met' : 'NOT met'}).`,
      '',
      `Command: \`${command}\``,
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
