// The durable queue's resend window: a key is sent at most once per interval per process,
// bounded in keys, with expiry by send order.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { RecentKeys } from '../src/queue/recent-keys.ts'

test('resend window: a key is suppressed for the interval after it was sent, then sent again (and suppressed again)', () => {
  let t = 1_000
  const r = new RecentKeys(1_000, 100, () => t)
  assert.equal(r.seen('a'), false, 'first offer is sent')
  t += 999
  assert.equal(r.seen('a'), true, 'inside the interval: a repeat')
  assert.equal(r.has('a'), true)
  assert.equal(r.seen('b'), false)
  t += 2 // a sent 1001 ms ago: past the interval
  assert.equal(r.has('a'), false)
  assert.equal(r.seen('a'), false, 'after the interval: sent again, which raises its demand')
  assert.equal(r.seen('a'), true)
  assert.equal(r.seen('b'), true, 'b was sent 2 ms ago')
  t += 1_000
  assert.equal(r.seen('c'), false)
  assert.ok(r.size <= 3)
})

test('resend window: forget lets the next offer through at once; interval 0 sends every offer; bounded in keys', () => {
  let t = 0
  const r = new RecentKeys(1_000, 3, () => t)
  r.seen('a')
  r.forget('a')
  assert.equal(r.seen('a'), false, 'a failed send is not a repeat')
  for (const k of ['b', 'c', 'd']) r.seen(k)
  assert.equal(r.size, 3)
  assert.equal(r.has('a'), false, 'the least recently sent key was forgotten past maxKeys')
  assert.equal(r.has('d'), true)
  t += 10
  assert.equal(r.seen('b'), true)
  const none = new RecentKeys(0, 10, () => t)
  assert.equal(none.seen('x'), false)
  assert.equal(none.seen('x'), false)
  assert.equal(none.has('x'), false)
})
