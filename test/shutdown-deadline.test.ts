// SIGTERM with work that cannot finish in time (issue 13): a request with a long budget does not
// hold the process past SHUTDOWN_TIMEOUT_MS, the L1 snapshot is written before the process exits,
// and the in-process queue's unfinished jobs are saved with it and re-queued at the next start.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadBundle } from '../src/bundle/load-bundle.ts'
import { readSnapshot } from '../src/cache/l1-snapshot.ts'
import { embeddingKey } from '../src/cache/keys.ts'
import { waitFor } from '../support/app.ts'
import { BUNDLE_DIR, SAMPLE_DIR } from '../support/bundle.ts'
import { startImageOrigin } from '../support/image-origin.ts'
import { startServerProcess } from '../support/server-process.ts'

const IMAGES = join(SAMPLE_DIR, 'images')
const FILES = readdirSync(IMAGES).filter((f) => f.endsWith('.jpg')).sort()

function metric(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`))
  return line ? Number(line.split(' ').pop()) : 0
}

test('shutdown deadline: snapshot with unfinished jobs, exit while a long request runs; jobs re-queued at start', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ctr-shutdown-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const snapshotPath = join(dir, 'l1.snap')
  const origin = await startImageOrigin(IMAGES, { delayMs: 600_000 }) // nothing the first process fetches ever arrives
  t.after(() => origin.close())
  const env = {
    IMAGE_ALLOWED_HOSTS: '127.0.0.1', IMAGE_FETCH_TIMEOUT_MS: '60000', L1_SNAPSHOT_PATH: snapshotPath,
    L1_SNAPSHOT_INTERVAL_S: '0', SHUTDOWN_TIMEOUT_MS: '4000', MAX_EVENT_LOOP_DELAY_MS: '0', MAX_BUDGET_MS: '60000',
  }
  const first = await startServerProcess(env)
  t.after(() => first.kill('SIGKILL'))
  const post = (url: string, body: object) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

  // Background jobs: 3 images (stuck in their fetch) and a title (done at once, so L1 is not empty).
  const queued = FILES.slice(300, 303).map((f, i) => ({ id: `q${i}`, image_url: `${origin.baseUrl}/${f}` }))
  assert.equal((await post(`${first.url}/predict`, { items: [...queued, { id: 't', title: 'saved across a restart' }] })).status, 200)
  await waitFor(async () => (metric(await (await fetch(`${first.url}/metrics`)).text(),
    'ctrserve_embedding_jobs_total', 'modality="text",outcome="done"') >= 1 ? true : undefined), 30_000, 50)
  // A request with a 60 s budget waiting for an image on the request path.
  const events: string[] = []
  const long = post(`${first.url}/predict`, {
    items: [{ id: 'long', image_url: `${origin.baseUrl}/${FILES[310] ?? ''}` }], options: { miss_policy: 'budget', budget_ms: 60_000 },
  }).then((r) => events.push(`answered ${r.status}`), () => events.push('connection lost'))
  await waitFor(async () => (origin.hits.size >= 4 ? true : undefined), 30_000, 20)

  first.kill('SIGTERM')
  const exit = await first.exited()
  events.push('exited')
  await long
  assert.deepEqual([...events].sort(), ['connection lost', 'exited'], 'the process ended while the long request was still running')
  assert.deepEqual(exit, { code: 1, signal: null })
  const log = first.output.join('')
  assert.ok(log.includes('shutdown deadline near: writing the L1 snapshot'), log.slice(-2000))
  assert.ok(log.includes('exited with requests still in flight'), log.slice(-2000))

  const m = (await loadBundle(BUNDLE_DIR)).manifest
  const versions = { image: m.encoders.image.version, text: m.encoders.text.version }
  const saved = await readSnapshot(snapshotPath, versions)
  assert.ok(saved.ok, saved.ok ? '' : saved.reason)
  const keys = queued.map((q) => embeddingKey('ctr', 'image', versions.image, q.image_url)).sort()
  assert.deepEqual(saved.jobs.map((j) => j.key).sort(), keys, 'the three unfinished image jobs were saved')
  assert.ok(saved.entries.keys.includes(embeddingKey('ctr', 'text', versions.text, 'saved across a restart')))

  // Restart with a working origin: the saved jobs run without any request asking for them.
  origin.delayMs = 0
  const second = await startServerProcess(env)
  t.after(() => second.kill('SIGKILL'))
  const done = await waitFor(async () => {
    const n = metric(await (await fetch(`${second.url}/metrics`)).text(), 'ctrserve_embedding_jobs_total', 'modality="image",outcome="done"')
    return n >= 3 ? n : undefined
  }, 60_000, 100)
  assert.equal(done, 3)
  const again = await (await post(`${second.url}/predict`, { items: queued })).json() as { predictions: Array<{ sources: { image: string } }> }
  assert.deepEqual(again.predictions.map((p) => p.sources.image), ['l1', 'l1', 'l1'])
  second.kill('SIGTERM')
  assert.deepEqual(await second.exited(), { code: 0, signal: null })
})
