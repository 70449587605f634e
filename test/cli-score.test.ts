import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { build } from '../support/app.ts'
import { SAMPLE_DIR } from '../support/bundle.ts'
import { type ImageOrigin, startImageOrigin } from '../support/image-origin.ts'
import { startRedis } from '../support/redis.ts'
import type { PredictResult } from '../src/predict/predict-service.ts'
import { partitionKeyPattern } from '../src/queue/partition-keys.ts'
import type { FieldValues, Prediction, PredictItem } from '../src/predict/types.ts'
import { ctrserve, readJsonl } from '../support/cli.ts' // the real binary, as operators run it

// `ctrserve score` as operators run it (the real binary, real bundle, real origin and Redis),
// compared with what POST /predict of a real server answers for the same rows.

const TOL = 1e-6



/** Max |Δ| over mean, raw_mean, std and every quantile; ids and sources must match exactly. */
function maxDiff(a: readonly Prediction[], b: readonly Prediction[]): number {
  assert.equal(a.length, b.length)
  let worst = 0
  a.forEach((p, i) => {
    const q = b[i] as Prediction
    assert.equal(p.id, q.id, `row ${i}`)
    assert.deepEqual(p.sources, q.sources, `row ${i} (${p.id})`)
    const pairs: Array<[number, number]> = [[p.ctr.mean, q.ctr.mean], [p.ctr.raw_mean, q.ctr.raw_mean], [p.ctr.std, q.ctr.std]]
    for (const [name, v] of Object.entries(p.ctr.quantiles)) pairs.push([v, q.ctr.quantiles[name] as number])
    for (const [x, y] of pairs) worst = Math.max(worst, Math.abs(x - y))
  })
  return worst
}

interface Group { context: FieldValues; items: PredictItem[] }

const items = readJsonl<PredictItem>(join(SAMPLE_DIR, 'items.jsonl'))
const contexts = readJsonl<FieldValues>(join(SAMPLE_DIR, 'contexts.jsonl'))
// Four requests' worth of rows: consecutive rows share a context; the last group is written as
// flat items carrying their context, and one item has no image (absent) and an unseen title (oov).
const groups: Group[] = [0, 1, 2, 3].map((j) => ({ context: contexts[j] as FieldValues, items: items.slice(j * 10, j * 10 + 10) }))
const extra: PredictItem = { id: 'no-image', title: 'a title nobody warmed', categorical: { publisher: 'pub0001' } }
groups[3]?.items.push(extra)

let dir = ''
let origin: ImageOrigin
let snapshot = ''
let rowsFile = ''
let fullOutput = ''

function withBase(it: PredictItem): PredictItem {
  return it.image_url ? { ...it, image_url: `${origin.baseUrl}/${it.image_url}` } : it
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ctrserve-cli-score-'))
  origin = await startImageOrigin(SAMPLE_DIR)
  snapshot = join(dir, 'l1.snap')
  writeFileSync(join(dir, 'items.jsonl'), `${items.slice(0, 40).map((it) => JSON.stringify(it)).join('\n')}\n`)
  const warm = await ctrserve(['warm', '--input', join(dir, 'items.jsonl'), '--snapshot', snapshot, '--base-url', origin.baseUrl])
  assert.equal(warm.code, 0, warm.stderr + warm.stdout)
  const lines = groups.flatMap((g, j) => g.items.map((it) => JSON.stringify(j === 3 ? { ...it, context: g.context } : { context: g.context, item: it })))
  rowsFile = join(dir, 'rows.jsonl')
  writeFileSync(rowsFile, `${lines.join('\n')}\n`)
  fullOutput = join(dir, 'full.jsonl')
  const run = await ctrserve(['score', '--input', rowsFile, '--output', fullOutput, '--snapshot', snapshot, '--base-url', origin.baseUrl,
    '--workers', '1', '--batch', '8', '--summary-json', join(dir, 'full.json')])
  assert.equal(run.code, 0, run.stderr + run.stdout)
})

after(async () => {
  await origin.close()
  rmSync(dir, { recursive: true, force: true })
})

test('score equals POST /predict on the same rows within 1e-6 (mean, raw_mean, std, quantiles) with the same sources', async (t) => {
  const scored = readJsonl<Prediction>(fullOutput)
  assert.equal(scored.length, 41)
  const serverSnapshot = join(dir, 'server.snap')
  copyFileSync(snapshot, serverSnapshot)
  const app = await build(t, { L1_SNAPSHOT_PATH: serverSnapshot, L1_SNAPSHOT_INTERVAL_S: 0 })
  const served: Prediction[] = []
  for (const g of groups) {
    const res = await app.inject({ method: 'POST', url: '/predict', payload: { context: g.context, items: g.items.map(withBase) } })
    assert.equal(res.statusCode, 200, res.body)
    served.push(...res.json<PredictResult>().predictions)
  }
  const worst = maxDiff(scored, served)
  assert.ok(worst <= TOL, `max |Δ| ${worst}`)
  assert.deepEqual(scored.slice(0, 40).map((p) => p.sources), scored.slice(0, 40).map(() => ({ image: 'l1', text: 'l1' })))
  assert.deepEqual(scored[40]?.sources, { image: 'absent', text: 'oov' })
  assert.deepEqual(Object.keys(scored[0] ?? {}), ['id', 'ctr', 'sources'])
  assert.deepEqual(Object.keys(scored[0]?.ctr ?? {}).sort(), Object.keys(served[0]?.ctr ?? {}).sort())

  const summary = JSON.parse(readFileSync(join(dir, 'full.json'), 'utf8')) as { scored: number; bodies: number; hitRate: { image: number; text: number } }
  assert.equal(summary.scored, 41)
  // Rows are grouped by context, at most --batch 8 per head run: 4 groups of 10 or 11 → 2 runs each.
  assert.equal(summary.bodies, 8)
  assert.equal(summary.hitRate.image, 1)
  assert.equal(summary.hitRate.text, 40 / 41)
})

test('--shard 0/2 and 1/2 cover every row exactly once, in the interleaved order of the full run', async () => {
  const full = readJsonl<Prediction>(fullOutput)
  const parts: Prediction[][] = []
  for (const k of [0, 1]) {
    const out = join(dir, `shard${k}.jsonl`)
    const run = await ctrserve(['score', '--input', rowsFile, '--output', out, '--snapshot', snapshot, '--base-url', origin.baseUrl,
      '--workers', '1', '--shard', `${k}/2`])
    assert.equal(run.code, 0, run.stderr)
    parts.push(readJsonl<Prediction>(out))
  }
  assert.equal(parts[0]?.length, 21)
  assert.equal(parts[1]?.length, 20)
  const merged = full.map((_, i) => (parts[i % 2] as Prediction[])[Math.floor(i / 2)] as Prediction)
  assert.ok(maxDiff(merged, full) <= TOL)
})

test('--workers 2 gives the rows in input order; bad rows are skipped, counted and fail the run over --max-invalid', async () => {
  const bad = join(dir, 'with-bad.jsonl')
  const lines = readFileSync(rowsFile, 'utf8').split('\n').filter((l) => l.trim())
  lines.splice(5, 0, '{"context": {}, "item": {"id": "x", "numeric": {"age_hours": "old"}}}')
  lines.splice(20, 0, 'not json')
  writeFileSync(bad, `${lines.join('\n')}\n`)
  const args = ['score', '--input', bad, '--snapshot', snapshot, '--base-url', origin.baseUrl, '--workers', '2']

  const strict = await ctrserve([...args, '--output', join(dir, 'strict.jsonl')])
  assert.equal(strict.code, 3, strict.stderr + strict.stdout)
  assert.match(strict.stdout, /invalid rows 2/)
  assert.match(strict.stdout, /item\/numeric\/age_hours: must be number/)

  const out = join(dir, 'workers.jsonl')
  const run = await ctrserve([...args, '--output', out, '--max-invalid', '2', '--summary-json', join(dir, 'w.json')])
  assert.equal(run.code, 0, run.stderr + run.stdout)
  assert.ok(maxDiff(readJsonl<Prediction>(out), readJsonl<Prediction>(fullOutput)) <= TOL)
  const s = JSON.parse(readFileSync(join(dir, 'w.json'), 'utf8')) as { workers: number; scored: number; invalid: number }
  assert.deepEqual({ workers: s.workers, scored: s.scored, invalid: s.invalid }, { workers: 2, scored: 41, invalid: 2 })
})

test('CSV rows (dotted columns, JSON arrays) score the same as the JSONL rows', async () => {
  const rows = groups.flatMap((g) => g.items.map((it) => ({ context: g.context, ...it })))
  const flat = rows.map((r) => flatten(r))
  const header = [...new Set(flat.flatMap((f) => Object.keys(f)))]
  const cell = (v: string | undefined): string => (v === undefined ? '' : `"${v.replace(/"/g, '""')}"`)
  const csv = [header.join(','), ...flat.map((f) => header.map((h) => cell(f[h])).join(','))].join('\n')
  writeFileSync(join(dir, 'rows.csv'), `${csv}\n`)
  const out = join(dir, 'csv.jsonl')
  const run = await ctrserve(['score', '--input', join(dir, 'rows.csv'), '--output', out, '--snapshot', snapshot,
    '--base-url', origin.baseUrl, '--workers', '1', '--batch', '8'])
  assert.equal(run.code, 0, run.stderr + run.stdout)
  assert.ok(maxDiff(readJsonl<Prediction>(out), readJsonl<Prediction>(fullOutput)) <= TOL)
})

test('--policy compute computes misses into Redis; a later oov run reads them back (l2) with the same numbers', async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  const fresh = join(dir, 'fresh.jsonl')
  writeFileSync(fresh, `${items.slice(100, 112).map((it) => JSON.stringify({ context: contexts[7], item: it })).join('\n')}\n`)
  const env = { REDIS_PREFIX: `score${process.pid}` }
  const common = ['--input', fresh, '--redis', redis.url, '--base-url', origin.baseUrl, '--workers', '1']
  const computed = await ctrserve(['score', ...common, '--policy', 'compute', '--output', join(dir, 'computed.jsonl')], env)
  assert.equal(computed.code, 0, computed.stderr + computed.stdout)
  const a = readJsonl<Prediction>(join(dir, 'computed.jsonl'))
  assert.deepEqual(new Set(a.map((p) => `${p.sources.image}/${p.sources.text}`)), new Set(['computed/computed']))

  const cached = await ctrserve(['score', ...common, '--output', join(dir, 'cached.jsonl')], env)
  assert.equal(cached.code, 0, cached.stderr)
  assert.match(cached.stdout, /image hit rate 100\.0% \(l1 0, l2 12/)
  const b = readJsonl<Prediction>(join(dir, 'cached.jsonl'))
  assert.deepEqual(new Set(b.map((p) => `${p.sources.image}/${p.sources.text}`)), new Set(['l2/l2']))
  const worst = Math.max(...a.map((p, i) => Math.abs(p.ctr.mean - (b[i] as Prediction).ctr.mean)))
  assert.ok(worst <= TOL, `max |Δ| ${worst}`)
})

function flatten(o: Record<string, unknown>, prefix = '', out: Record<string, string> = {}): Record<string, string> {
  for (const [k, v] of Object.entries(o)) {
    const path = prefix ? `${prefix}.${k}` : k
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) flatten(v as Record<string, unknown>, path, out)
    else out[path] = Array.isArray(v) ? JSON.stringify(v) : String(v)
  }
  return out
}

test('--policy oov with Redis queues misses on the shared durable queue only with --enqueue-misses', async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  const fresh = join(dir, 'enqueue.jsonl')
  writeFileSync(fresh, `${items.slice(200, 206).map((it) => JSON.stringify({ context: contexts[9], item: it })).join('\n')}\n`)
  const prefix = `enq${process.pid}`
  const common = ['score', '--input', fresh, '--redis', redis.url, '--base-url', origin.baseUrl, '--workers', '1', '--output', join(dir, 'enq.jsonl')]
  const client = new Redis(redis.url)
  try {
    const quiet = await ctrserve(common, { REDIS_PREFIX: prefix })
    assert.equal(quiet.code, 0, quiet.stderr)
    assert.deepEqual(await client.keys(`${prefix}:q:*`), [])
    const queued = await ctrserve([...common, '--enqueue-misses'], { REDIS_PREFIX: prefix })
    assert.equal(queued.code, 0, queued.stderr)
    for (const modality of ['image', 'text'] as const) {
      const hashes = await client.keys(partitionKeyPattern(prefix, 'jobs', modality))
      const jobs = await Promise.all(hashes.map((k) => client.hlen(k)))
      assert.equal(jobs.reduce((a, b) => a + b, 0), 6, `${modality} jobs queued`)
    }
  } finally {
    await client.quit()
  }
})
