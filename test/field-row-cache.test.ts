// The cache of hashed categorical values is bounded in bytes (FIELD_CACHE_MAX_BYTES), evicts the
// least recently used value (not everything at once), gives the rows hashing gives, and is in /metrics.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createMetrics } from '../src/metrics.ts'
import { ROW_ENTRY_OVERHEAD_BYTES, RowCache } from '../src/fusion/row-cache.ts'
import { build } from '../support/app.ts'

test('bounded in bytes, least recently used first; the metric follows', async () => {
  const metrics = createMetrics({ defaultMetrics: false })
  const per = 2 * 'v000'.length + ROW_ENTRY_OVERHEAD_BYTES
  const cache = new RowCache({ maxBytes: 10 * per, metrics })
  let computed = 0
  const row = (v: string) => cache.get('publisher', v, () => { computed++; return Number(v.slice(1)) })
  for (let i = 0; i < 10; i++) assert.equal(row(`v${String(i).padStart(3, '0')}`), i)
  assert.equal(computed, 10)
  assert.equal(row('v000'), 0) // a hit, and now the most recent
  assert.equal(computed, 10)
  row('v010') // evicts v001, the least recently used
  assert.equal(cache.size, 10)
  assert.ok(cache.bytes <= 10 * per)
  row('v000')
  assert.equal(computed, 11, 'v000 survived')
  row('v001')
  assert.equal(computed, 12, 'v001 was evicted')
  // Same value in another field is another entry.
  cache.get('country', 'v000', () => 99)
  assert.equal(cache.get('country', 'v000', () => -1), 99)
  const text = await metrics.registry.metrics()
  assert.match(text, /ctrserve_field_row_cache\{stat="entries"\} 10/)
  assert.match(text, new RegExp(`ctrserve_field_row_cache\\{stat="bytes"\\} ${cache.bytes}`))
})

test('through /predict: the same answers with a tiny cache as with the default one', async (t) => {
  const small = await build(t, { FIELD_CACHE_MAX_BYTES: 65_536 })
  const big = await build(t)
  const items = Array.from({ length: 400 }, (_, i) => ({ id: `i${i}`, categorical: { publisher: `p${i}`, tags: [`t${i % 7}`, `u${i}`] } }))
  const a = (await small.inject({ method: 'POST', url: '/predict', payload: { items } })).json<{ predictions: Array<{ ctr: { mean: number } }> }>()
  const b = (await big.inject({ method: 'POST', url: '/predict', payload: { items } })).json<{ predictions: Array<{ ctr: { mean: number } }> }>()
  assert.deepEqual(a.predictions.map((p) => p.ctr.mean), b.predictions.map((p) => p.ctr.mean))
  const m = (await small.inject({ url: '/metrics' })).body
  const bytes = Number(/ctrserve_field_row_cache\{stat="bytes"\} (\d+)/.exec(m)?.[1])
  assert.ok(bytes > 0 && bytes <= 65_536, `bytes ${bytes}`)
})
