// The queue's handler: a background job carries no job-level deadline (each fetch is bounded from
// its own start by IMAGE_FETCH_TIMEOUT_MS), so an image loaded while the encoders were busy is
// encoded rather than dropped and fetched again; and done means stored.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { EmbeddingService } from '../src/embedding/embedding-service.ts'
import { makeJobHandler, type JobStore } from '../src/embedding/job-handler.ts'
import { createMetrics } from '../src/metrics.ts'
import type { EmbedJob } from '../src/queue/types.ts'
import { build } from '../support/app.ts'
import { SAMPLE_DIR } from '../support/bundle.ts'
import { startImageOrigin } from '../support/image-origin.ts'

const quiet = { info: () => undefined }

/** A store with nothing in it that records writes and confirms them all in "Redis". */
function recordingStore(): JobStore & { written: Array<{ key: string; vector: Float32Array }> } {
  const written: Array<{ key: string; vector: Float32Array }> = []
  return {
    written,
    l2: {},
    lookup: async (keys) => keys.map(() => undefined),
    store: async (entries) => { written.push(...entries); return entries.length },
  }
}

test('job handler: a background batch is computed with no deadline of its own', async () => {
  const deadlines: number[] = []
  const embedder = {
    compute: async (_m: string, reqs: ReadonlyArray<{ key: string }>, deadline: number) => {
      deadlines.push(deadline)
      return reqs.map(() => ({ ok: true as const, vector: new Float32Array(4), stored: true }))
    },
  }
  const handler = makeJobHandler(embedder, recordingStore(), quiet)
  const jobs: EmbedJob[] = [{ key: 'k:image:v:1', modality: 'image', input: 'http://127.0.0.1/a.jpg' }]
  assert.deepEqual(await handler(jobs), [{ ok: true }])
  assert.deepEqual(deadlines, [Number.POSITIVE_INFINITY])
})

test('job handler: real image workers fetch, encode and store a job without a deadline; a failed write is not done', async (t) => {
  const origin = await startImageOrigin(join(SAMPLE_DIR, 'images'))
  t.after(() => origin.close())
  const server = await build(t)
  const store = recordingStore()
  const embedder = new EmbeddingService({ imagePool: server.encoders.image, textPool: server.encoders.text, sink: store, metrics: createMetrics() })
  const handler = makeJobHandler(embedder, store, quiet)
  const images = ['i00004.jpg', 'i00007.jpg', 'missing.jpg']
  const jobs: EmbedJob[] = images.map((name, i) => ({ key: `k:image:v:${i}`, modality: 'image', input: `${origin.baseUrl}/${name}` }))
  const outcomes = await handler(jobs)
  assert.deepEqual(outcomes.map((o) => o.ok), [true, true, false])
  assert.equal(outcomes[2]?.ok === false && outcomes[2].permanent, true, 'a 404 is permanent')
  assert.deepEqual(store.written.map((w) => w.key), ['k:image:v:0', 'k:image:v:1'])
  for (const { vector } of store.written) {
    assert.ok(vector.length > 0 && vector.every(Number.isFinite), 'a real, finite embedding')
  }
  // The write after computing confirms fewer vectors than asked: transient, never done.
  const shortStore = { ...recordingStore(), store: async () => 0 }
  const short = makeJobHandler(new EmbeddingService({ imagePool: server.encoders.image, textPool: server.encoders.text, sink: shortStore, metrics: createMetrics() }), shortStore, quiet)
  const [again] = await short(jobs.slice(0, 1))
  assert.equal(again?.ok, false)
  assert.equal(again?.ok === false && again.permanent, false)
})
