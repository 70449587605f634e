import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createServer } from 'node:http'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { build } from '../support/app.ts'
import { BUNDLE_DIR, SAMPLE_DIR } from '../support/bundle.ts'
import { startImageOrigin } from '../support/image-origin.ts'
import { startRedis } from '../support/redis.ts'
import { sampleContexts, sampleItems } from '../support/sample.ts'
import type { PredictResult } from '../src/predict/predict-service.ts'
import type { WarmSummary } from '../src/batch/warm.ts'
import { BIN, ctrserve, type Run } from '../support/cli.ts' // the real binary, as operators run it

// `ctrserve warm` as operators run it: the real binary in a child process, a real image origin on
// 127.0.0.1, a real redis-server, the real bundle; then a real server reads what it wrote.



function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'ctrserve-cli-warm-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** The first `n` sample items as committed (relative image_url), written as JSONL. */
function writeItems(path: string, from: number, to: number): void {
  const lines = readFileSync(join(SAMPLE_DIR, 'items.jsonl'), 'utf8').split('\n').filter((l) => l.trim()).slice(from, to)
  writeFileSync(path, `${lines.join('\n')}\n`)
}

function summaryOf(path: string): WarmSummary & { failureRate: number; exitCode: number } {
  return JSON.parse(readFileSync(path, 'utf8')) as WarmSummary & { failureRate: number; exitCode: number }
}

async function predictSources(app: FastifyInstance, baseUrl: string, n: number): Promise<PredictResult> {
  const res = await app.inject({ method: 'POST', url: '/predict', payload: { context: sampleContexts(1)[0], items: sampleItems(baseUrl, n) } })
  assert.equal(res.statusCode, 200, res.body)
  return res.json<PredictResult>()
}

test('warm to Redis: every image and title is computed once and a server on that Redis answers l2 for them', async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  const origin = await startImageOrigin(SAMPLE_DIR)
  t.after(() => origin.close())
  const dir = tempDir(t)
  const prefix = `warm${process.pid}`
  writeItems(join(dir, 'items.jsonl'), 0, 24)

  const run = await ctrserve(['warm', '--input', join(dir, 'items.jsonl'), '--redis', redis.url, '--base-url', origin.baseUrl,
    '--batch', '8', '--summary-json', join(dir, 's.json')], { REDIS_PREFIX: prefix })
  assert.equal(run.code, 0, run.stderr + run.stdout)
  const s = summaryOf(join(dir, 's.json'))
  assert.deepEqual(s.jobs.image, { done: 24, skipped: 0, failed: 0, retried: 0 })
  assert.deepEqual(s.jobs.text, { done: 24, skipped: 0, failed: 0, retried: 0 })
  assert.equal(s.failureRate, 0)
  assert.match(run.stdout, /image done 24/)
  for (const it of sampleItems(origin.baseUrl, 24)) assert.equal(origin.hits.get(new URL(it.image_url ?? '').pathname), 1)

  const client = new Redis(redis.url)
  const keys = await client.keys(`${prefix}:*`)
  await client.quit()
  assert.equal(keys.filter((k) => k.includes(':image:')).length, 24)
  assert.equal(keys.filter((k) => k.includes(':text:')).length, 24)

  const app = await build(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix })
  const r = await predictSources(app, origin.baseUrl, 24)
  assert.deepEqual(new Set(r.predictions.map((p) => `${p.sources.image}/${p.sources.text}`)), new Set(['l2/l2']))
  // The server fetched nothing: the vectors came from what warm wrote.
  for (const it of sampleItems(origin.baseUrl, 24)) assert.equal(origin.hits.get(new URL(it.image_url ?? '').pathname), 1)
})

test('warm resumes: keys already in Redis are skipped (counted) and not fetched again', async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  const origin = await startImageOrigin(SAMPLE_DIR)
  t.after(() => origin.close())
  const dir = tempDir(t)
  const env = { REDIS_PREFIX: `resume${process.pid}` }
  writeItems(join(dir, 'first.jsonl'), 0, 10)
  writeItems(join(dir, 'all.jsonl'), 0, 30)
  const first = await ctrserve(['warm', '--input', join(dir, 'first.jsonl'), '--redis', redis.url, '--base-url', origin.baseUrl], env)
  assert.equal(first.code, 0, first.stderr)

  const rest = await ctrserve(['warm', '--input', join(dir, 'all.jsonl'), '--redis', redis.url, '--base-url', origin.baseUrl,
    '--summary-json', join(dir, 's.json')], env)
  assert.equal(rest.code, 0, rest.stderr)
  const s = summaryOf(join(dir, 's.json'))
  assert.deepEqual({ ...s.jobs.image }, { done: 20, skipped: 10, failed: 0, retried: 0 })
  assert.deepEqual({ ...s.jobs.text }, { done: 20, skipped: 10, failed: 0, retried: 0 })
  for (const it of sampleItems(origin.baseUrl, 30)) assert.equal(origin.hits.get(new URL(it.image_url ?? '').pathname), 1)
})

test('warm to an L1 snapshot: a server started with L1_SNAPSHOT_PATH answers l1; a rerun skips every key', async (t) => {
  const origin = await startImageOrigin(SAMPLE_DIR)
  t.after(() => origin.close())
  const dir = tempDir(t)
  const snapshot = join(dir, 'l1.snap')
  // CSV input: dotted columns, JSON for the multi-valued tags.
  const items = sampleItems('', 16)
  const header = 'id,image_url,title,categorical.publisher,categorical.tags,numeric.age_hours'
  const csvCell = (s: string): string => `"${s.replace(/"/g, '""')}"`
  const rows = items.map((it) => [it.id, (it.image_url ?? '').replace(/^\//, ''), it.title ?? '', it.categorical?.publisher ?? '',
    JSON.stringify(it.categorical?.tags ?? []), String(it.numeric?.age_hours ?? '')].map((c) => csvCell(String(c))).join(','))
  writeFileSync(join(dir, 'items.csv'), `${header}\r\n${rows.join('\r\n')}\r\n`)

  const run = await ctrserve(['warm', '--input', join(dir, 'items.csv'), '--snapshot', snapshot, '--base-url', origin.baseUrl,
    '--summary-json', join(dir, 's.json')])
  assert.equal(run.code, 0, run.stderr + run.stdout)
  const s = summaryOf(join(dir, 's.json'))
  assert.equal(s.jobs.image.done, 16)
  assert.equal(s.jobs.text.done, 16)
  assert.match(run.stdout, /snapshot: 32 vectors/)

  const app = await build(t, { L1_SNAPSHOT_PATH: snapshot, L1_SNAPSHOT_INTERVAL_S: 0 })
  const r = await predictSources(app, origin.baseUrl, 16)
  assert.deepEqual(new Set(r.predictions.map((p) => `${p.sources.image}/${p.sources.text}`)), new Set(['l1/l1']))
  await app.close()

  const again = await ctrserve(['warm', '--input', join(dir, 'items.csv'), '--snapshot', snapshot, '--base-url', origin.baseUrl,
    '--summary-json', join(dir, 's2.json')])
  assert.equal(again.code, 0, again.stderr)
  const s2 = summaryOf(join(dir, 's2.json'))
  assert.deepEqual({ ...s2.jobs.image }, { done: 0, skipped: 16, failed: 0, retried: 0 })
  assert.deepEqual({ ...s2.jobs.text }, { done: 0, skipped: 16, failed: 0, retried: 0 })
})

test('permanent failures (404) are counted by reason, fetched once, and exit 3 over --max-failure-rate', async (t) => {
  const origin = await startImageOrigin(SAMPLE_DIR)
  t.after(() => origin.close())
  const dir = tempDir(t)
  writeItems(join(dir, 'items.jsonl'), 0, 12)
  const args = ['warm', '--input', join(dir, 'items.jsonl'), '--snapshot', join(dir, 'l1.snap'), '--base-url', `${origin.baseUrl}/missing/`]
  const run = await ctrserve([...args, '--summary-json', join(dir, 's.json')])
  assert.equal(run.code, 3, run.stderr + run.stdout)
  const s = summaryOf(join(dir, 's.json'))
  assert.deepEqual({ ...s.jobs.image }, { done: 0, skipped: 0, failed: 12, retried: 0 })
  assert.equal(s.jobs.text.done, 12)
  assert.deepEqual(s.failures, { 'http-4xx': 12 })
  assert.equal(s.failureRate, 0.5)
  assert.match(run.stdout, /http-4xx\s+12/)
  for (const [path, n] of origin.hits) if (path.startsWith('/missing/')) assert.equal(n, 1, `${path} fetched ${n} times`)

  const tolerant = await ctrserve([...args, '--max-failure-rate', '0.6'])
  assert.equal(tolerant.code, 0, tolerant.stderr + tolerant.stdout)
})

test('transient failures (503) are retried with backoff up to --retries, then counted', async (t) => {
  const hits = new Map<string, number>()
  const server = createServer((req, res) => {
    hits.set(req.url ?? '', (hits.get(req.url ?? '') ?? 0) + 1)
    res.writeHead(503).end('busy')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()) }))
  const addr = server.address()
  const port = typeof addr === 'object' && addr ? addr.port : 0
  const dir = tempDir(t)
  writeItems(join(dir, 'items.jsonl'), 0, 3)
  const run = await ctrserve(['warm', '--input', join(dir, 'items.jsonl'), '--snapshot', join(dir, 'l1.snap'),
    '--base-url', `http://127.0.0.1:${port}/`, '--retries', '3', '--summary-json', join(dir, 's.json')])
  assert.equal(run.code, 3, run.stderr + run.stdout)
  const s = summaryOf(join(dir, 's.json'))
  assert.deepEqual({ ...s.jobs.image }, { done: 0, skipped: 0, failed: 3, retried: 6 })
  assert.deepEqual(s.failures, { 'http-5xx': 3 })
  assert.equal(hits.size, 3)
  for (const [path, n] of hits) assert.equal(n, 3, `${path} fetched ${n} times`)
})

test('warm refuses to run without a target and explains the options', async () => {
  const run = await ctrserve(['warm', '--input', '/dev/null'])
  assert.equal(run.code, 2)
  assert.match(run.stderr, /nowhere to write: give --redis URL/)
})

test('Ctrl-C stops warm with exit 130 after saving the snapshot; a rerun skips what was done and finishes the rest', async (t) => {
  const origin = await startImageOrigin(SAMPLE_DIR)
  t.after(() => origin.close())
  const dir = tempDir(t)
  const snapshot = join(dir, 'l1.snap')
  writeItems(join(dir, 'items.jsonl'), 0, 1500)
  const args = ['warm', '--input', join(dir, 'items.jsonl'), '--snapshot', snapshot, '--base-url', origin.baseUrl, '--progress-interval', '1']
  const first = await new Promise<Omit<Run, 'seconds'>>((done, fail) => {
    const c = spawn(process.execPath, [BIN, ...args, '--summary-json', join(dir, 's1.json')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, MODEL_DIR: BUNDLE_DIR, IMAGE_ALLOWED_HOSTS: '127.0.0.1', REDIS_URL: '', L1_SNAPSHOT_PATH: '' },
    })
    let stdout = ''
    let stderr = ''
    let sent = false
    c.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
    c.stderr.on('data', (b: Buffer) => {
      stderr += b.toString()
      // The first progress line: the runtime is up and rows are being embedded. One Ctrl-C only.
      if (!sent && /warm: \d+\/1500 rows/.test(stderr)) { sent = true; c.kill('SIGINT') }
    })
    c.once('error', fail)
    c.once('exit', (code) => done({ code: code ?? -1, stdout, stderr }))
  })
  assert.equal(first.code, 130, first.stderr + first.stdout)
  const s1 = summaryOf(join(dir, 's1.json'))
  assert.equal(s1.interrupted, true)
  assert.ok(s1.jobs.image.done > 0 && s1.jobs.image.done < 1500, `done ${s1.jobs.image.done}`)

  const second = await ctrserve([...args, '--summary-json', join(dir, 's2.json')])
  assert.equal(second.code, 0, second.stderr)
  const s2 = summaryOf(join(dir, 's2.json'))
  for (const m of ['image', 'text'] as const) {
    assert.equal(s2.jobs[m].skipped, s1.jobs[m].done, m)
    assert.equal(s2.jobs[m].done + s2.jobs[m].skipped, 1500, m)
  }
})
