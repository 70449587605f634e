// The memo of cache keys gives exactly the keys embeddingKey gives, builds each hot key once, keeps
// modalities apart and stays within its byte budget (least recently used inputs go first).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { embeddingKey } from '../src/cache/keys.ts'
import { KEY_MEMO_ENTRY_OVERHEAD_BYTES, memoizedKeyOf } from '../src/cache/key-memo.ts'
import type { Modality } from '../src/cache/keys.ts'

test('same keys as embeddingKey; each input hashed once while it is recent; bounded per modality', () => {
  let built = 0
  const raw = (m: Modality, input: string) => { built++; return embeddingKey('ctr', m, m === 'image' ? 'img1' : 'txt1', input) }
  const perEntry = 2 * ('u000'.length + raw('image', 'u000').length) + KEY_MEMO_ENTRY_OVERHEAD_BYTES
  built = 0
  // Budget: 10 entries per modality.
  const keyOf = memoizedKeyOf(raw, 2 * 10 * perEntry)
  const inputs = Array.from({ length: 10 }, (_, i) => `u${String(i).padStart(3, '0')}`)
  for (const u of inputs) assert.equal(keyOf('image', u), embeddingKey('ctr', 'image', 'img1', u))
  assert.equal(built, 10)
  for (const u of inputs) keyOf('image', u)
  assert.equal(built, 10, 'hits build nothing')
  // The same input as a title is another key, built once.
  assert.equal(keyOf('text', 'u000'), embeddingKey('ctr', 'text', 'txt1', 'u000'))
  assert.notEqual(keyOf('text', 'u000'), keyOf('image', 'u000'))
  assert.equal(built, 11)
  // An 11th image input evicts the least recently used one (u001: u000 was just read).
  keyOf('image', 'u010')
  assert.equal(built, 12)
  keyOf('image', 'u000')
  assert.equal(built, 12, 'u000 kept')
  keyOf('image', 'u001')
  assert.equal(built, 13, 'u001 was evicted and is built again')
  assert.equal(keyOf('image', 'u001'), embeddingKey('ctr', 'image', 'img1', 'u001'))
})
