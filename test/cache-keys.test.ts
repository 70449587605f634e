import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { embeddingKey, inputDigest, parseModality } from '../src/cache/keys.ts'

test('embedding key is <prefix>:<modality>:<version>:<first 32 hex of sha256(input)>', () => {
  const url = 'https://img.example/a1.jpg'
  const digest = createHash('sha256').update(url, 'utf8').digest('hex').slice(0, 32)
  assert.equal(embeddingKey('ctr', 'image', '0123456789abcdef', url), `ctr:image:0123456789abcdef:${digest}`)
  assert.equal(inputDigest(url), digest)
  assert.match(inputDigest('Ünïcödé title 🚗'), /^[0-9a-f]{32}$/)
})

test('a new encoder version or another modality never shares a key', () => {
  const a = embeddingKey('ctr', 'text', 'aaaaaaaaaaaaaaaa', 'red suv')
  const b = embeddingKey('ctr', 'text', 'bbbbbbbbbbbbbbbb', 'red suv')
  const c = embeddingKey('ctr', 'image', 'aaaaaaaaaaaaaaaa', 'red suv')
  assert.equal(new Set([a, b, c]).size, 3)
})

test('parseModality reads the modality from the end, so prefixes may contain ":"', () => {
  assert.equal(parseModality(embeddingKey('ctr:prod:eu', 'text', 'v1', 'x')), 'text')
  assert.equal(parseModality(embeddingKey('p', 'image', 'v1', 'x')), 'image')
  assert.equal(parseModality('p:table:v1:abc'), undefined)
  assert.equal(parseModality('no-colons'), undefined)
  assert.equal(parseModality('a:b'), undefined)
})

test('an encoder version with ":" is refused (it would shift the key segments)', () => {
  assert.throws(() => embeddingKey('ctr', 'image', 'v:1', 'x'), /contain no ':'/)
  assert.throws(() => embeddingKey('ctr', 'image', '', 'x'), /non-empty/)
})
