// The split head through the real app (WEB_CONCURRENCY=2: scorer thread, shared slabs, each cached
// image's projection kept in its slot) answers what the whole head answers on the request thread
// (WEB_CONCURRENCY=1), and projects each cached image once, not once per request.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { build } from '../support/app.ts'
import { SAMPLE_DIR } from '../support/bundle.ts'
import { startImageOrigin } from '../support/image-origin.ts'
import { sampleContexts, sampleItems } from '../support/sample.ts'
import { ScorerPool } from '../src/scoring/scorer-pool.ts'
import type { PredictResult } from '../src/predict/predict-service.ts'

type App = Awaited<ReturnType<typeof build>>

test('WEB_CONCURRENCY=2 (split head, cached projections) answers as WEB_CONCURRENCY=1 (whole head); one projection per cached image', async (t) => {
  const origin = await startImageOrigin(SAMPLE_DIR)
  t.after(() => origin.close())
  const one = await build(t, { WEB_CONCURRENCY: 1 })
  const two = await build(t, { WEB_CONCURRENCY: 2 })
  assert.ok(two.scorer instanceof ScorerPool)
  const pool = two.scorer
  const items = sampleItems(origin.baseUrl, 24)
  const body = { context: sampleContexts(1)[0], items }
  const ask = async (app: App): Promise<PredictResult> => JSON.parse((await app.inject({ method: 'POST', url: '/predict', payload: body })).body) as PredictResult
  // Until background embedding has every image and title in L1 (both apps then score cached vectors).
  const settled = async (app: App): Promise<PredictResult> => {
    for (let i = 0; i < 400; i++) {
      const r = await ask(app)
      if (r.predictions.every((p) => p.sources.image === 'l1' && p.sources.text === 'l1')) return r
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error('background embedding did not finish')
  }
  const want = await settled(one)
  const first = await settled(two)
  const projectedAfterFirst = pool.projectedImages
  assert.ok(projectedAfterFirst >= items.length, `every image projected at least once (${projectedAfterFirst})`)
  const again = await ask(two)
  const third = await ask(two)
  assert.equal(pool.projectedImages, projectedAfterFirst, 'later requests use the projections kept in the slots')
  const metrics = (await two.inject({ url: '/metrics' })).body
  assert.match(metrics, new RegExp(`ctrserve_image_projections_total ${projectedAfterFirst}\n`))
  for (const got of [first, again, third]) {
    assert.equal(got.predictions.length, want.predictions.length)
    got.predictions.forEach((p, i) => {
      const w = want.predictions[i] as (typeof want.predictions)[number]
      assert.equal(p.id, w.id)
      // Both apps embedded the images themselves (encoder batches may differ in the last bits).
      for (const k of ['mean', 'raw_mean', 'std'] as const) assert.ok(Math.abs(p.ctr[k] - w.ctr[k]) <= 1e-6 * Math.max(1e-3, w.ctr[k]), `${p.id} ${k}: ${p.ctr[k]} vs ${w.ctr[k]}`)
    })
  }
  // The same vectors give the same bytes: the second and third answers equal the first.
  assert.equal(JSON.stringify(again.predictions), JSON.stringify(first.predictions))
  assert.equal(JSON.stringify(third.predictions), JSON.stringify(first.predictions))
})
