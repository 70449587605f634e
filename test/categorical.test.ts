import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { categoricalRow, murmur3x86_32 } from '../src/modalities/categorical.ts'
import { numericRow } from '../src/modalities/numeric.ts'
import type { Manifest } from '../src/bundle/manifest.ts'
import { BUNDLE_DIR } from '../support/bundle.ts'

const manifest = JSON.parse(readFileSync(`${BUNDLE_DIR}/manifest.json`, 'utf8')) as Manifest
const enc = new TextEncoder()

test('murmur3 x86_32 matches the reference values', () => {
  // Published MurmurHash3_x86_32 test values.
  assert.equal(murmur3x86_32(enc.encode(''), 0), 0)
  assert.equal(murmur3x86_32(enc.encode(''), 1), 0x514e28b7)
  assert.equal(murmur3x86_32(enc.encode('Hello, world!'), 1234), 0xfaf6cdb3)
  assert.equal(murmur3x86_32(enc.encode('The quick brown fox jumps over the lazy dog'), 0x9747b28c), 0x2fa826cd)
})

test('categorical rows equal the training hash test vectors (Python and TypeScript agree)', () => {
  assert.ok(manifest.hash_test_vectors.length >= 30)
  const fields = new Map(manifest.fields.flatMap((f) => (f.type === 'categorical' ? [[f.name, f] as const] : [])))
  for (const v of manifest.hash_test_vectors) {
    const f = fields.get(v.field)
    assert.ok(f, `unknown field ${v.field}`)
    assert.equal(categoricalRow(f, v.value), v.row, `${v.field}=${JSON.stringify(v.value)}`)
  }
})

test('numeric rows: 1 + bisect_right over the bundle edges', () => {
  const f = manifest.fields.find((x) => x.type === 'numeric')
  assert.ok(f && f.type === 'numeric' && f.edges.length > 1)
  const e = f.edges
  assert.equal(numericRow(f, -1e300), 1)
  assert.equal(numericRow(f, e[0]!), 2, 'a value equal to an edge goes to the bin above it')
  assert.equal(numericRow(f, e[e.length - 1]! + 1), e.length + 1)
  assert.equal(f.rows, e.length + 2)
})
