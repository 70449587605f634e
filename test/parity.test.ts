import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { build, waitFor } from '../support/app.ts'
import { BUNDLE_DIR } from '../support/bundle.ts'
import { startImageOrigin } from '../support/image-origin.ts'
import { formatTable } from '../src/verify/diff-stats.ts'
import { DiffCollector } from '../src/verify/diff-stats.ts'
import { loadParityFixtures, runParity } from '../src/verify/parity.ts'
import type { PredictResult } from '../src/predict/predict-service.ts'
import type { PredictItem } from '../src/predict/types.ts'

test('every stage matches the PyTorch outputs of the parity fixtures', async (t) => {
  const app = await build(t)
  const r = await runParity({ bundle: app.bundle, imagePool: app.encoders.image, textPool: app.encoders.text, head: app.fusionHead })
  const table = r.diffs.table()
  for (const line of formatTable(table).split("\n")) t.diagnostic(line)
  assert.ok(r.fixtures >= 100, `only ${r.fixtures} fixtures`)
  assert.deepEqual(r.pixelDigestMismatches, [], 'decoded pixels differ between PIL and libvips')
  assert.deepEqual(r.tokenMismatches, [], 'token ids differ between tokenizers (Python) and transformers.js')
  const row = (name: string) => {
    const x = table.find((s) => s.output === name)
    assert.ok(x, `no ${name} row`)
    return x
  }
  for (const name of ['image_emb', 'text_emb', 'pi', 'mu', 'sigma']) assert.ok(row(name).max <= 1e-4, `${name} max |Δ| = ${row(name).max}`)
  assert.ok(row('fields_emb').max <= 1e-7, `fields_emb max |Δ| = ${row('fields_emb').max}`)
  const mean = row('mean (calibrated)')
  assert.ok(mean.p99 <= 1e-6, `calibrated mean p99 |Δ| = ${mean.p99}`)
  assert.ok(mean.max <= 1e-4, `calibrated mean max |Δ| = ${mean.max}`)
})

test('end to end over HTTP: fixtures from a real origin give the PyTorch calibrated means', async (t) => {
  const origin = await startImageOrigin(BUNDLE_DIR)
  t.after(() => origin.close())
  const app = await build(t, { EMBED_BATCH_SIZE: 32 })
  const { fixtures, expected } = await loadParityFixtures(app.bundle)
  const diffs = new DiffCollector()
  // One request per context: the fixtures carry their own context.
  const requestOf = (i: number) => {
    const f = fixtures[i]!
    const item: PredictItem = { ...f.item, id: f.id }
    if (f.image_oov) delete item.image_url
    else item.image_url = `${origin.baseUrl}/${f.image_file}`
    if (f.text_oov) delete item.title
    return { context: f.context, items: [item] }
  }
  const warm = fixtures.map((_, i) => app.inject({ method: 'POST', url: '/predict', payload: requestOf(i) }))
  await Promise.all(warm)
  for (let i = 0; i < fixtures.length; i++) {
    const f = fixtures[i]!
    const want = { image: f.image_oov ? 'absent' : 'l1', text: f.text_oov ? 'absent' : 'l1' }
    const res = await waitFor(async () => {
      const r = (await app.inject({ method: 'POST', url: '/predict', payload: requestOf(i) })).json<PredictResult>()
      const p = r.predictions[0]!
      return p.sources.image === want.image && p.sources.text === want.text ? p : undefined
    })
    diffs.add('mean (calibrated)', [res.ctr.mean], [expected[i]!.mean])
    diffs.add('std', [res.ctr.std], [expected[i]!.std])
  }
  const table = diffs.table()
  for (const line of formatTable(table).split("\n")) t.diagnostic(line)
  const mean = table.find((r) => r.output === 'mean (calibrated)')!
  assert.equal(mean.count, fixtures.length)
  assert.ok(mean.p99 <= 1e-6, `p99 |Δ| = ${mean.p99}`)
  assert.ok(mean.max <= 1e-4, `max |Δ| = ${mean.max}`)
  void join
})
