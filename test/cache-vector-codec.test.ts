import { test } from 'node:test'
import assert from 'node:assert/strict'
import { bufferToVector, vectorToBuffer } from '../src/cache/vector-codec.ts'
import { bytesOf } from '../support/vectors.ts'


test('vectorToBuffer is a zero-copy little-endian view that respects the vector offset', () => {
  const backing = new Float32Array([9, 9, 1.5, -2.25, 9])
  const v = backing.subarray(2, 4)
  const b = vectorToBuffer(v)
  assert.equal(b.buffer, backing.buffer)
  assert.equal(b.byteOffset, 8)
  assert.equal(b.length, 8)
  assert.equal(b.readFloatLE(0), 1.5)
  assert.equal(b.readFloatLE(4), -2.25)
})

test('bufferToVector copies from odd offsets and pooled buffers, views a buffer it can own', () => {
  const v = new Float32Array([0.1, -0, 3.4e38, 1e-45, -7])
  const odd = Buffer.alloc(v.byteLength + 3)
  bytesOf(v).copy(odd, 3)
  const fromOdd = bufferToVector(odd.subarray(3), v.length)
  assert.ok(fromOdd)
  assert.ok(bytesOf(fromOdd).equals(bytesOf(v)), 'exact bytes from an odd offset')

  const pooled = Buffer.from(bytesOf(v)) // small Buffer.from() comes from the shared 8 kB pool
  const fromPooled = bufferToVector(pooled, v.length)
  assert.ok(fromPooled)
  assert.notEqual(fromPooled.buffer, pooled.buffer, 'must not pin the pool slab')
  assert.ok(bytesOf(fromPooled).equals(bytesOf(v)))

  const owned = Buffer.from(new Uint8Array(bytesOf(v)).buffer)
  const fromOwned = bufferToVector(owned, v.length)
  assert.ok(fromOwned)
  assert.equal(fromOwned.buffer, owned.buffer, 'a whole, aligned ArrayBuffer is viewed, not copied')
})

test('a value of the wrong length is a miss', () => {
  assert.equal(bufferToVector(Buffer.alloc(16), 3), undefined)
  assert.equal(bufferToVector(Buffer.alloc(15), 4), undefined)
  assert.equal(bufferToVector(Buffer.alloc(0), 0), undefined)
})
