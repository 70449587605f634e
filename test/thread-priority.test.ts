import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readlinkSync } from 'node:fs'
import { getPriority } from 'node:os'
import { lowerThisThread, lowerThreadpool } from '../src/util/thread-priority.ts'

// Linux only: thread ids and per-thread nice values come from /proc.
const linux = process.platform === 'linux'

function tids(): number[] {
  return readdirSync('/proc/self/task').map(Number)
}

test('lowerThreadpool finds every libuv pool thread and lowers only those', { skip: !linux }, async () => {
  const main = Number(readlinkSync('/proc/thread-self').split('/').pop())
  const before = new Map(tids().map((t) => [t, getPriority(t)]))
  const lowered = await lowerThreadpool(7, 4)
  assert.equal(lowered, 4, 'UV_THREADPOOL_SIZE defaults to 4')
  const changed = tids().filter((t) => getPriority(t) === 7)
  assert.equal(changed.length, 4)
  assert.ok(!changed.includes(main), 'the main thread keeps its priority')
  assert.equal(getPriority(main), before.get(main))
  assert.equal(await lowerThreadpool(0), 0, 'nice 0 changes nothing')
  assert.equal(lowerThisThread(0), undefined)
})
