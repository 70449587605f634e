import { test } from 'node:test'
import assert from 'node:assert/strict'
import { loadBundle } from '../src/bundle/load-bundle.ts'
import { Head, type HeadInputs } from '../src/fusion/head.ts'
import { mixtureStatsOf } from '../src/mdn/batch-stats.ts'
import { PredictionsJson } from '../src/predict/predictions-json.ts'
import { InlineScorer } from '../src/scoring/scorer.ts'
import { ScorerPool } from '../src/scoring/scorer-pool.ts'
import { BUNDLE_DIR } from '../support/bundle.ts'
import { rng } from '../support/random.ts'

// Scorer threads (WEB_CONCURRENCY > 1) must give the request thread's numbers exactly, for any batch
// size (input sets are reused across sizes), and refuse work once closed.

function filler(seed: number): (x: HeadInputs) => void {
  return (x) => {
    const r = rng(seed)
    for (const a of [x.image, x.text, x.fields]) for (let i = 0; i < a.length; i++) a[i] = r() - 0.5
    for (let i = 0; i < x.n; i++) { x.imageOov[i] = r() < 0.2 ? 1 : 0; x.textOov[i] = r() < 0.2 ? 1 : 0 }
  }
}

test('scorer threads and the request thread give identical statistics, head outputs and JSON', async (t) => {
  const bundle = await loadBundle(BUNDLE_DIR)
  const head = await Head.load(bundle, 1)
  const stats = mixtureStatsOf(bundle.manifest)
  const inline = new InlineScorer(head, stats, new PredictionsJson(stats))
  const pool = new ScorerPool(bundle, 2, 1)
  t.after(async () => { await pool.close(); await head.close() })
  await pool.ready()
  const sizes = [1, 7, 130, 3, 500, 64]
  const got = await Promise.all(sizes.map((n, s) => pool.score(n, filler(s))))
  for (const [s, n] of sizes.entries()) {
    const want = await inline.score(n, filler(s))
    const g = got[s]!
    assert.equal(g.n, n)
    assert.deepEqual(Array.from(g.rows), Array.from(want.rows), `rows of batch ${s} (${n} items)`)
    assert.deepEqual(Array.from(g.pi), Array.from(want.pi))
    assert.deepEqual(Array.from(g.sigma), Array.from(want.sigma))
    const meta = { ids: Array.from({ length: n }, (_, i) => `id-${i}`), image: Array(n).fill('l1'), text: Array(n).fill('oov') }
    const [a, b] = await Promise.all([pool.scoreJson(n, filler(s), meta), inline.scoreJson(n, filler(s), meta)])
    assert.equal(a.json, b.json)
    assert.equal((JSON.parse(a.json) as unknown[]).length, n)
  }
  await assert.rejects(pool.score(2, () => { throw new Error('bad field') }), /bad field/)
  await pool.close()
  await assert.rejects(pool.score(1, filler(0)), /closed/)
})
