import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { settleWithin } from '../src/util/settle-within.ts'

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
  const started = Date.now()
  const slow = await settleWithin(() => sleep(80).then(() => { throw new Error('late') }), 20)
  const elapsed = Date.now() - started
  assert.equal(!slow.ok && slow.timedOut, true)
  assert.ok(elapsed < 70, `waited ${elapsed} ms for a 20 ms bound`)
  await sleep(100) // the late rejection lands after we gave up: it must not be unhandled
  process.off('unhandledRejection', onUnhandled)
  assert.equal(unhandled, 0)
})
