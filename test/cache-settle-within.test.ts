import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { settleWithin, withTimeout } from '../src/util/settle-within.ts'

test('settles with the value, the rejection, a synchronous throw, or a timeout — never rejects', async () => {
  assert.deepEqual(await settleWithin(async () => 7, 100), { ok: true, value: 7 })

  const rejected = await settleWithin(() => Promise.reject(new Error('boom')), 100)
  assert.equal(rejected.ok, false)
  assert.equal(!rejected.ok && rejected.error.message, 'boom')
  assert.equal(!rejected.ok && rejected.timedOut, false)

  const thrown = await settleWithin((): Promise<number> => { throw new Error('sync') }, 100)
  assert.equal(!thrown.ok && thrown.error.message, 'sync')

  let unhandled = 0
  const onUnhandled = (): void => { unhandled++ }
  process.on('unhandledRejection', onUnhandled)
  // Ordering, not wall-clock: the wait gives up before the work settles (a busy machine may stretch both).
  let workSettled = false
  const slow = await settleWithin(() => sleep(500).then(() => { workSettled = true; throw new Error('late') }), 20)
  assert.equal(!slow.ok && slow.timedOut, true)
  assert.equal(workSettled, false, 'gave up before the work settled')
  await sleep(600) // the late rejection lands after we gave up: it must not be unhandled
  assert.equal(workSettled, true)
  process.off('unhandledRejection', onUnhandled)
  assert.equal(unhandled, 0)
})

test('withTimeout: the value, the work\'s own error, or a time-out error naming the operation', async () => {
  assert.equal(await withTimeout(Promise.resolve(3), 100, 'xadd'), 3)
  await assert.rejects(withTimeout(Promise.reject(new Error('READONLY')), 100, 'xadd'), /^Error: READONLY$/)
  let workSettled = false
  const late = sleep(500).then(() => { workSettled = true; return 1 })
  await assert.rejects(withTimeout(late, 20, 'xadd'), /xadd timed out after 20 ms/)
  assert.equal(workSettled, false, 'rejected before the work settled')
})
