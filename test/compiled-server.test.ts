// The compiled build (npm run build → dist/) is what `./ctl start`, `npm start` and the benches
// run: its worker threads start from their .js files without tsx, and it answers as the sources do.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { build } from '../support/app.ts'
import { SAMPLE_DIR } from '../support/bundle.ts'
import { DIST_SERVER, ensureBuilt } from '../support/dist-build.ts'
import { startImageOrigin } from '../support/image-origin.ts'
import { sampleItems } from '../support/sample.ts'
import { startServerProcess } from '../support/server-process.ts'
import { workerStart } from '../src/workers/worker-entry.ts'
import type { PredictResult } from '../src/predict/predict-service.ts'

const ENTRY = new URL('../src/scoring/scorer-worker.ts', import.meta.url)

test('worker threads: through the tsx bootstrap from src/, their own .js file from dist/', async () => {
  const tsx = workerStart(ENTRY, { kind: 'image' })
  assert.ok(tsx.url.pathname.endsWith('/src/embedding/worker-bootstrap.mjs'))
  assert.ok(existsSync(tsx.url))
  assert.deepEqual(tsx.workerData, { kind: 'image', entry: ENTRY.href })

  await ensureBuilt()
  const compiled = await import(pathToFileURL(DIST_SERVER.replace(/server\.js$/, 'workers/worker-entry.js')).href) as { workerStart: typeof workerStart }
  const entry = new URL('../dist/scoring/scorer-worker.ts', import.meta.url) // as dist/scoring/scorer-pool.js names it
  const direct = compiled.workerStart(entry, { kind: 'image' })
  assert.ok(direct.url.pathname.endsWith('/dist/scoring/scorer-worker.js'))
  assert.ok(existsSync(direct.url))
  assert.deepEqual(direct.workerData, { kind: 'image' })
})

test('node dist/server.js computes, caches and scores as the sources under tsx do', { timeout: 240_000 }, async (t) => {
  const origin = await startImageOrigin(SAMPLE_DIR)
  t.after(() => origin.close())
  // Two threads: a scorer thread beside the request thread, as on any multi-core machine.
  const env = { IMAGE_ALLOWED_HOSTS: '127.0.0.1', WEB_CONCURRENCY: '2', LOG_LEVEL: 'warn' }
  const server = await startServerProcess(env)
  t.after(() => server.kill('SIGKILL'))
  assert.ok(server.child.spawnargs.includes(DIST_SERVER), server.child.spawnargs.join(' '))
  assert.ok(!server.child.spawnargs.some((a) => a.includes('tsx')))

  const items = sampleItems(origin.baseUrl, 4)
  const predict = async (url: string, body: object): Promise<PredictResult> => {
    const res = await fetch(`${url}/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    assert.equal(res.status, 200, await res.clone().text())
    return await res.json() as PredictResult
  }
  // Encoder workers and the image loader thread compute the misses, the scorer thread scores.
  const computed = await predict(server.url, { items, options: { miss_policy: 'budget', budget_ms: 10_000 } })
  assert.deepEqual(computed.predictions.map((p) => p.id), items.map((it) => it.id))
  for (const p of computed.predictions) assert.deepEqual(p.sources, { image: 'computed', text: 'computed' })
  const cached = await predict(server.url, { items })
  for (const p of cached.predictions) assert.deepEqual(p.sources, { image: 'l1', text: 'l1' })

  const app = await build(t, { WEB_CONCURRENCY: 2 })
  const res = await app.inject({ method: 'POST', url: '/predict', payload: { items, options: { miss_policy: 'budget', budget_ms: 10_000 } } })
  const want = res.json<PredictResult>()
  for (const [i, p] of cached.predictions.entries()) {
    const w = want.predictions[i]!
    assert.deepEqual(w.sources, { image: 'computed', text: 'computed' })
    assert.ok(p.ctr.mean > 0 && p.ctr.mean < 1)
    assert.ok(Math.abs(p.ctr.mean - w.ctr.mean) <= 1e-9, `item ${p.id}: compiled ${p.ctr.mean}, tsx ${w.ctr.mean}`)
  }
})
