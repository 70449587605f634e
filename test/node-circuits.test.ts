// Per-master circuit breakers of L2 reads on a cluster (src/cache/node-circuits.ts).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { NodeCircuits } from '../src/cache/node-circuits.ts'

test('node circuits: a key maps to its slot\'s nodes, master first; an opened node is skipped for openMs, then tried again; close ends it early', () => {
  const slots: Array<string[] | undefined> = new Array(16384).fill(undefined)
  slots[12182] = ['127.0.0.1:7001', '127.0.0.1:7004'] // 'foo' hashes to slot 12182
  let t = 0
  const c = new NodeCircuits(() => slots, 1_000, () => t)
  assert.deepEqual(c.slotNodes('foo'), ['127.0.0.1:7001', '127.0.0.1:7004'], 'master first')
  assert.deepEqual(c.slotNodes('{foo}:anything'), ['127.0.0.1:7001', '127.0.0.1:7004'], 'the hash tag decides the slot')
  assert.equal(c.slotNodes('bar'), undefined, 'slot map not known for that slot')
  assert.equal(c.isOpen('127.0.0.1:7001'), false)
  c.open('127.0.0.1:7001')
  t += 999
  assert.equal(c.isOpen('127.0.0.1:7001'), true)
  assert.equal(c.isOpen('127.0.0.1:7002'), false, 'other masters are read as usual')
  t += 1
  assert.equal(c.isOpen('127.0.0.1:7001'), false, 'half-open after openMs: the next read tries it')
  c.open('127.0.0.1:7001')
  c.close('127.0.0.1:7001')
  assert.equal(c.isOpen('127.0.0.1:7001'), false)
  assert.equal(c.isOpen(undefined), false)
})
