import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ENTRY_OVERHEAD_BYTES, L1Cache } from '../src/cache/l1.ts'
import { bytesOf, randomVector } from '../support/vectors.ts'

const VERSIONS = { image: '0123456789abcdef', text: 'fedcba9876543210' }



function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'ctrserve-l1-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

test('L1 is bounded in bytes and evicts the least recently used entry', () => {
  // 12-char keys and 128-float vectors: 512 + 12 + overhead bytes per entry.
  const entry = 128 * 4 + 12 + ENTRY_OVERHEAD_BYTES
  const l1 = new L1Cache({ maxBytes: 3 * entry })
  for (const k of ['p:text:v:001', 'p:text:v:002', 'p:text:v:003']) l1.set(k, randomVector(128))
  assert.equal(l1.size, 3)
  assert.equal(l1.bytes, 3 * entry)

  assert.ok(l1.get('p:text:v:001')) // now most recently used; 002 is the oldest
  l1.set('p:text:v:004', randomVector(128))
  assert.equal(l1.size, 3)
  assert.equal(l1.bytes, 3 * entry)
  assert.deepEqual(['001', '002', '003', '004'].map((n) => l1.has(`p:text:v:${n}`)), [true, false, true, true])
})

test('a large vector evicts as many small ones as its bytes need; one larger than the budget is not kept', () => {
  const text = 128 * 4 + 12 + ENTRY_OVERHEAD_BYTES // 780 with a 256-byte overhead
  const image = 1280 * 4 + 13 + ENTRY_OVERHEAD_BYTES // 5389
  const l1 = new L1Cache({ maxBytes: 6000 })
  for (const k of ['p:text:v:001', 'p:text:v:002', 'p:text:v:003']) l1.set(k, randomVector(128))
  l1.set('p:image:v:001', randomVector(1280))
  // 3 × 780 + 5389 = 7729 > 6000: all three texts go (after two, 6169 still exceeds the budget).
  assert.equal(l1.size, 1)
  assert.equal(l1.bytes, image)
  assert.ok(image + text > 6000)

  const tiny = new L1Cache({ maxBytes: 4000 })
  tiny.set('p:image:v:001', randomVector(1280))
  assert.equal(tiny.size, 0)
  assert.equal(tiny.bytes, 0)
})

test('snapshot round trip restores keys, exact bytes and recency order', async (t) => {
  const dir = tempDir(t)
  const l1 = new L1Cache({ maxBytes: 10_000_000 })
  const special = new Float32Array([NaN, -0, Infinity, -Infinity, 1e-45, 3.4028234663852886e38, 0.1])
  l1.set('ctr:text:v:special', special)
  for (let i = 0; i < 200; i++) l1.set(`ctr:text:v:${i}`, randomVector(128))
  for (let i = 0; i < 20; i++) l1.set(`ctr:image:v:${i}`, randomVector(1280))
  l1.get('ctr:text:v:special') // most recently used: must come back last
  const path = join(dir, 'l1.snap')

  const saved = await l1.saveSnapshot(path, { versions: VERSIONS })
  assert.equal(saved.entries, 221)
  assert.equal(statSync(path).size, saved.bytes)
  assert.deepEqual(readdirSync(dir), ['l1.snap'], 'no temp file left behind')

  const restored = new L1Cache({ maxBytes: 10_000_000 })
  // Same versions in another key order are the same versions.
  const loaded = await restored.loadSnapshot(path, { versions: { text: VERSIONS.text, image: VERSIONS.image } })
  assert.deepEqual(loaded, { loaded: true, entries: 221, jobs: [] })
  assert.equal(restored.size, l1.size)
  assert.equal(restored.bytes, l1.bytes)
  const before = l1.entries()
  const after = restored.entries()
  assert.deepEqual(after.map(([k]) => k), before.map(([k]) => k))
  assert.equal(after.at(-1)?.[0], 'ctr:text:v:special')
  for (let i = 0; i < before.length; i++) {
    const [, a] = before[i] ?? ['', new Float32Array(0)]
    const [, b] = after[i] ?? ['', new Float32Array(0)]
    assert.ok(bytesOf(a).equals(bytesOf(b)), `entry ${i} differs`)
  }
})

test('corrupt, truncated, foreign, alien and missing snapshots are rejected with a reason and load nothing', async (t) => {
  const dir = tempDir(t)
  const source = new L1Cache({ maxBytes: 1_000_000 })
  for (let i = 0; i < 50; i++) source.set(`ctr:text:v:${i}`, randomVector(128))
  const good = join(dir, 'good.snap')
  await source.saveSnapshot(good, { versions: VERSIONS })
  const bytes = readFileSync(good)

  const corrupt = Buffer.from(bytes)
  const mid = Math.floor(corrupt.length / 2)
  corrupt.writeUInt8(corrupt.readUInt8(mid) ^ 0x01, mid) // one flipped bit in a vector
  writeFileSync(join(dir, 'corrupt.snap'), corrupt)
  writeFileSync(join(dir, 'truncated.snap'), bytes.subarray(0, bytes.length - 100))
  writeFileSync(join(dir, 'short.snap'), bytes.subarray(0, 10))
  writeFileSync(join(dir, 'alien.snap'), 'this is not a snapshot at all')
  const padded = Buffer.concat([bytes, Buffer.alloc(4)])
  writeFileSync(join(dir, 'padded.snap'), padded)

  const cases: Array<[string, Record<string, string>, string, RegExp]> = [
    ['corrupt.snap', VERSIONS, 'corrupt', /checksum/],
    ['truncated.snap', VERSIONS, 'truncated', /truncated/],
    ['short.snap', VERSIONS, 'truncated', /truncated/],
    ['alien.snap', VERSIONS, 'not-a-snapshot', /bad magic/],
    ['padded.snap', VERSIONS, 'corrupt', /trailing bytes/],
    ['good.snap', { ...VERSIONS, image: 'aaaaaaaaaaaaaaaa' }, 'foreign', /encoder versions/],
    ['good.snap', { text: VERSIONS.text }, 'foreign', /encoder versions/],
    ['nothing-here.snap', VERSIONS, 'missing', /no snapshot/],
  ]
  for (const [file, versions, rejection, reason] of cases) {
    const l1 = new L1Cache({ maxBytes: 1_000_000 })
    l1.set('ctr:text:v:kept', randomVector(128))
    const result = await l1.loadSnapshot(join(dir, file), { versions })
    assert.equal(result.loaded, false, file)
    if (result.loaded) continue
    assert.equal(result.rejection, rejection, `${file}: ${result.reason}`)
    assert.match(result.reason, reason)
    assert.equal(l1.size, 1, `${file} must not load anything`)
  }
})

test('an empty cache snapshots and loads as zero entries', async (t) => {
  const path = join(tempDir(t), 'empty.snap')
  await new L1Cache({ maxBytes: 1000 }).saveSnapshot(path, { versions: VERSIONS })
  const l1 = new L1Cache({ maxBytes: 1000 })
  assert.deepEqual(await l1.loadSnapshot(path, { versions: VERSIONS }), { loaded: true, entries: 0, jobs: [] })
  assert.equal(l1.size, 0)
})

test('a row view of a batch buffer is copied so L1 never pins the batch', () => {
  const batch = randomVector(128 * 8)
  const row = batch.subarray(128, 256)
  const whole = randomVector(128)
  const l1 = new L1Cache({ maxBytes: 1_000_000 })
  l1.set('p:text:v:row', row)
  l1.set('p:text:v:whole', whole)
  const stored = l1.get('p:text:v:row')
  assert.ok(stored)
  assert.notEqual(stored.buffer, batch.buffer)
  assert.equal(stored.buffer.byteLength, 128 * 4)
  assert.ok(bytesOf(stored).equals(bytesOf(row)))
  assert.equal(l1.get('p:text:v:whole'), whole, 'an owning vector is kept as is')
})

test('a bad byte budget is refused', () => {
  assert.throws(() => new L1Cache({ maxBytes: 0 }), /positive integer/)
  assert.throws(() => new L1Cache({ maxBytes: 1.5 }), /positive integer/)
})

test('unfinished queue jobs travel with the snapshot; jobs whose vector is in it are not re-queued', async (t) => {
  const path = join(tempDir(t), 'l1.snap')
  const l1 = new L1Cache({ maxBytes: 1 << 20 })
  l1.set('p:text:v:done', randomVector(128))
  const jobs = [
    { key: 'p:image:v:a', modality: 'image' as const, input: 'https://cdn.example/a.jpg' },
    { key: 'p:text:v:done', modality: 'text' as const, input: 'finished after all' },
    { key: 'p:text:v:b', modality: 'text' as const, input: 'naïve “quotes” \u0000 and \n newlines' },
  ]
  await l1.saveSnapshot(path, { versions: VERSIONS, jobs })
  const back = await new L1Cache({ maxBytes: 1 << 20 }).loadSnapshot(path, { versions: VERSIONS })
  assert.ok(back.loaded)
  assert.deepEqual(back.jobs, [jobs[0], jobs[2]])
  // Without jobs the header is what format 1 always was, and loads with none.
  await l1.saveSnapshot(path, { versions: VERSIONS })
  const none = await new L1Cache({ maxBytes: 1 << 20 }).loadSnapshot(path, { versions: VERSIONS })
  assert.ok(none.loaded)
  assert.deepEqual(none.jobs, [])
})
