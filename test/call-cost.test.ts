import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CallCost } from '../src/scoring/call-cost.ts'

const close = (got: number, want: number, tol: number, what: string): void =>
  assert.ok(Math.abs(got - want) <= tol, `${what}: ${got} vs ${want} (±${tol})`)

test('call cost: the fixed part and the part per row are told apart from calls of mixed sizes', () => {
  const c = new CallCost()
  assert.deepEqual(c.fit(), { fixedMs: 0, perRowMs: 0 })
  for (let i = 0; i < 40; i++) { const n = [1, 7, 3, 12, 2, 100][i % 6]!; c.observe(n, 2 + 0.01 * n) }
  const f = c.fit()
  close(f.fixedMs, 2, 1e-9, 'fixed')
  close(f.perRowMs, 0.01, 1e-11, 'per row')
  // Eleven small calls queued: 11 fixed parts plus their 37 rows, not 37 rows at a small call's average.
  close(c.estimateMs(11, 37), 11 * 2 + 37 * 0.01, 1e-8, 'eleven calls')
})

test('call cost: a cold first call and pauses do not move the fit (the per-row average counted small calls 30x)', () => {
  const c = new CallCost()
  // A cold first call of one row, then calls whose real cost is 1 ms + 0.02 ms a row, one in five
  // caught by a 40 ms pause.
  c.observe(1, 30)
  for (let i = 0; i < 15; i++) { const n = 1 + (i % 12); c.observe(n, 1 + 0.02 * n + (i % 5 === 4 ? 40 : 0)) }
  const f = c.fit()
  close(f.fixedMs, 1, 1e-9, 'fixed')
  close(f.perRowMs, 0.02, 1e-11, 'per row')
  // What the old estimate (a moving average of ms per row, 0.9/0.1) made of the same calls.
  let perRow = 30
  for (let i = 0; i < 15; i++) { const n = 1 + (i % 12); perRow = 0.9 * perRow + 0.1 * (1 + 0.02 * n + (i % 5 === 4 ? 40 : 0)) / n }
  assert.ok(perRow * 37 > 10 * c.estimateMs(11, 37), `old ${perRow * 37} ms vs ${c.estimateMs(11, 37)} ms for eleven small calls`)
})

test('call cost: calls of one size charge everything to rows; no part is ever negative; bad samples are ignored; old calls are forgotten', () => {
  const one = new CallCost()
  for (let i = 0; i < 5; i++) one.observe(50, 5)
  close(one.fit().fixedMs, 0, 0, 'fixed')
  close(one.fit().perRowMs, 0.1, 1e-15, 'per row')
  close(one.estimateMs(20, 20_000), 2000, 1e-9, '20 000 rows')
  // Larger calls measured faster (noise, a JIT warming up): all of it is fixed, the median call.
  const tilted = new CallCost()
  tilted.observe(10, 6)
  tilted.observe(20, 4)
  tilted.observe(30, 5)
  assert.deepEqual(tilted.fit(), { fixedMs: 5, perRowMs: 0 })
  // A line through a negative fixed part: the median cost per row instead.
  const steep = new CallCost()
  steep.observe(10, 1)
  steep.observe(20, 5)
  steep.observe(40, 13)
  const f = steep.fit()
  assert.deepEqual(f, { fixedMs: 0, perRowMs: 0.25 })
  steep.observe(0, 100)
  steep.observe(5, Number.NaN)
  steep.observe(5, -1)
  assert.deepEqual(steep.fit(), f)
  // A window of 4: the first calls leave it.
  const short = new CallCost(4)
  for (const n of [1, 2, 3, 4]) short.observe(n, 100 * n)
  for (const n of [1, 2, 3, 4]) short.observe(n, 1 + n)
  assert.deepEqual(short.fit(), { fixedMs: 1, perRowMs: 1 })
})
