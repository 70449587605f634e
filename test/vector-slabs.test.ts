import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ENTRY_OVERHEAD_BYTES, L1Cache } from '../src/cache/l1.ts'
import { loadBundle } from '../src/bundle/load-bundle.ts'
import { Head } from '../src/fusion/head.ts'
import { mixtureStatsOf } from '../src/mdn/batch-stats.ts'
import { PredictionsJson } from '../src/predict/predictions-json.ts'
import { InlineScorer } from '../src/scoring/scorer.ts'
import { ScorerPool } from '../src/scoring/scorer-pool.ts'
import { QUARANTINE_MS, VectorSlabs } from '../src/scoring/vector-slabs.ts'
import { projectionTail } from '../src/scoring/image-projections.ts'
import { BUNDLE_DIR } from '../support/bundle.ts'
import { rng } from '../support/random.ts'

// Cached vectors live in shared slabs when scorer threads run (WEB_CONCURRENCY > 1): the request
// thread hands over [slab, offset] and the scorer thread copies the vector in. The answers must be
// those of copying on the request thread, and a slot freed by eviction must not be reused while a
// scorer thread may still read it.

function vector(r: () => number, dim: number): Float32Array {
  return Float32Array.from({ length: dim }, () => r() - 0.5)
}

test('slabs: adopt copies into shared memory, eviction frees the slot after the quarantine only, full slabs fall back', () => {
  let now = 0
  const slabs = new VectorSlabs(1, () => now) // one 8 MiB slab
  const r = rng(3)
  const a = vector(r, 1280)
  const kept = slabs.adopt(a)
  assert.ok(kept.buffer instanceof SharedArrayBuffer)
  assert.deepEqual(Array.from(kept), Array.from(a))
  assert.equal(slabs.adopt(kept), kept, 'a slab vector is not copied again')
  assert.deepEqual(slabs.locate(kept), { slab: 0, offset: 0 })
  assert.equal(slabs.slabOf(a), -1)

  const l1 = new L1Cache({ maxBytes: 3 * (1280 * 4 + 300), home: slabs })
  l1.set('k1', vector(r, 1280))
  const first = l1.get('k1') as Float32Array
  const firstAt = slabs.locate(first)
  l1.set('k2', vector(r, 1280))
  l1.set('k3', vector(r, 1280))
  l1.set('k4', vector(r, 1280)) // evicts k1
  assert.equal(l1.get('k1'), undefined)
  const before = Array.from(first)
  l1.set('k5', vector(r, 1280)) // k2 goes; k1's slot is still in quarantine
  assert.notDeepEqual(slabs.locate(l1.get('k5') as Float32Array), firstAt)
  assert.deepEqual(Array.from(first), before, 'an evicted vector is left intact during the quarantine')
  now += QUARANTINE_MS
  l1.set('k6', vector(r, 1280))
  assert.deepEqual(slabs.locate(l1.get('k6') as Float32Array), firstAt, 'reused after the quarantine')

  // 8 MiB holds 1638 image vectors: past that, vectors stay ordinary arrays.
  const many = Array.from({ length: 1700 }, () => slabs.adopt(vector(r, 1280)))
  assert.ok(many.slice(0, 1500).every((v) => v.buffer instanceof SharedArrayBuffer))
  assert.ok(!(many[1699]?.buffer instanceof SharedArrayBuffer))
})

for (const imageProjections of [false, true]) {
  const how = imageProjections ? ' (split head: cached image projections)' : ''
  test(`rows handed over by reference score exactly as rows copied on the request thread${how}`, async (t) => {
    const bundle = await loadBundle(BUNDLE_DIR)
    const head = await Head.load(bundle, 1)
    const stats = mixtureStatsOf(bundle.manifest)
    const inline = new InlineScorer(head, stats, new PredictionsJson(stats))
    const di = bundle.manifest.oov.image.dim
    const dt = bundle.manifest.oov.text.dim
    const dim = bundle.manifest.head.image_projection?.dim
    assert.ok(dim, 'the bundle has a split head')
    const slabs = new VectorSlabs(16 << 20, Date.now, imageProjections ? [projectionTail(di, dim)] : [])
    const pool = new ScorerPool(bundle, 1, 1, undefined, { buffers: slabs.buffers, imageProjections })
    t.after(async () => { await pool.close(); await head.close() })
    await pool.ready()
    const r = rng(9)
    const n = 150
    const rows = Array.from({ length: n }, (_, i) => ({
      // Every third row's image and every second row's text in a slab; the others plain arrays;
      // every seventh image is the OOV vector (flagged).
      image: i % 7 === 5 ? bundle.oov.image : i % 3 === 0 ? slabs.adopt(vector(r, di)) : vector(r, di),
      imageOov: i % 7 === 5 ? 1 : 0,
      text: i % 2 === 0 ? slabs.adopt(vector(r, dt)) : vector(r, dt),
      fields: vector(r, bundle.fieldsDim),
    }))
    const fill = (byRef: boolean) => (x: { image: Float32Array; text: Float32Array; imageOov: Float32Array; textOov: Float32Array; fields: Float32Array; refs?: Int32Array }) => {
      rows.forEach((row, i) => {
        for (const [v, out, dim, at] of [[row.image, x.image, di, 2 * i], [row.text, x.text, dt, 2 * (n + i)]] as const) {
          const where = slabs.locate(v)
          if (byRef && where && x.refs) { x.refs[at] = where.slab; x.refs[at + 1] = where.offset } else out.set(v, i * dim)
        }
        x.imageOov[i] = row.imageOov
        x.textOov[i] = 0
        x.fields.set(row.fields, i * bundle.fieldsDim)
      })
    }
    const want = await inline.score(n, fill(false))
    const got = await pool.score(n, fill(true))
    assert.deepEqual(Array.from(got.rows), Array.from(want.rows))
    assert.deepEqual(Array.from(got.mu), Array.from(want.mu))
    // Projections now cached in the slots: the same answers from them.
    const cached = await pool.score(n, fill(true))
    assert.deepEqual(Array.from(cached.rows), Array.from(want.rows))
    if (imageProjections) {
      // The cached projection is what the second call used: spoil row 0's and its answer moves.
      const where = slabs.locate(rows[0]?.image as Float32Array) as { slab: number; offset: number }
      const proj = new Float32Array(slabs.buffers[where.slab] as SharedArrayBuffer, (where.offset + di + 2) * 4, dim)
      const saved = proj.slice()
      proj.fill(0)
      const spoiled = await pool.score(n, fill(true))
      assert.notEqual(spoiled.mu[0], want.mu[0])
      assert.equal(spoiled.mu[stats.k], want.mu[stats.k], 'other rows unchanged')
      proj.set(saved)
    }
    // A reused input set: refs of the earlier request must not leak into one that copies every row.
    const again = await pool.score(n, fill(false))
    assert.deepEqual(Array.from(again.rows), Array.from(want.rows))
  })
}

test('slots with a tail: a new generation per adoption, room for the projection, charged to L1', () => {
  let now = 0
  const slabs = new VectorSlabs(1, () => now, [projectionTail(1280, 64)])
  assert.equal(slabs.tailBytes(1280), (2 + 64) * 4)
  assert.equal(slabs.tailBytes(128), 0)
  const r = rng(4)
  const a = slabs.adopt(vector(r, 1280))
  const b = slabs.adopt(vector(r, 1280))
  const t = slabs.adopt(vector(r, 128))
  const ints = new Int32Array(slabs.buffers[0] as SharedArrayBuffer)
  const genA = ints[a.byteOffset / 4 + 1280] as number
  const genB = ints[b.byteOffset / 4 + 1280] as number
  assert.ok(genA > 0 && genB > genA, `generations ${genA}, ${genB}`)
  // b starts after a's slot and its tail; the text vector has no tail.
  assert.equal(b.byteOffset - a.byteOffset, (1280 + 2 + 64) * 4)
  assert.equal(t.byteOffset - b.byteOffset, (1280 + 2 + 64) * 4)
  // A freed slot comes back (after the quarantine) with a newer generation.
  slabs.release(a)
  now += QUARANTINE_MS
  const c = slabs.adopt(vector(r, 1280))
  assert.equal(c.byteOffset, a.byteOffset)
  assert.ok((ints[c.byteOffset / 4 + 1280] as number) > genB)
  // L1 charges the tail with the vector.
  const l1 = new L1Cache({ maxBytes: 1 << 20, home: slabs })
  l1.set('k', vector(r, 1280))
  assert.equal(l1.bytes, 1280 * 4 + (2 + 64) * 4 + 'k'.length + ENTRY_OVERHEAD_BYTES)
})
