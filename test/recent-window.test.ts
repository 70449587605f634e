import { test } from 'node:test'
import assert from 'node:assert/strict'
import { RecentWindow } from '../src/util/recent-window.ts'
import { rng } from '../support/random.ts'

// Tail quantiles are found by a top-k scan, others by sorting: both must give the nearest rank of
// the window's current values (ties, a window not yet full, a window that has wrapped).

function nearestRank(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number
}

test('quantile is the nearest rank of the last `size` values, for tail and central quantiles', () => {
  const r = rng(11)
  for (let trial = 0; trial < 300; trial++) {
    const size = 1 + Math.floor(r() * 300)
    const w = new RecentWindow(size)
    const all: number[] = []
    const m = Math.floor(r() * 700)
    for (let i = 0; i < m; i++) {
      const v = Math.floor(r() * 20) // many ties
      w.add(v)
      all.push(v)
    }
    const recent = all.slice(-size)
    for (const q of [0, 0.5, 0.9, 0.95, 0.99, 0.999, 1]) assert.equal(w.quantile(q), nearestRank(recent, q), `size ${size}, ${m} values, q ${q}`)
  }
  assert.ok(Number.isNaN(new RecentWindow(4).quantile(0.99)))
})
