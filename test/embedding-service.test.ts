// Every promise EmbeddingService creates in the background is handled: a failing cache write
// reaches the callers as a rejection and never as an unhandled rejection (which ends a Node 20 process).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { EmbeddingService } from '../src/embedding/embedding-service.ts'
import { createMetrics } from '../src/metrics.ts'
import { build } from '../support/app.ts'

test('a sink that rejects fails the callers, leaves nothing in flight and no unhandled rejection', async (t) => {
  const server = await build(t)
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.after(() => process.off('unhandledRejection', onUnhandled))
  const rt = { imagePool: server.encoders.image, textPool: server.encoders.text }
  const sink = { store: async (): Promise<never> => { throw new Error('redis write failed') } }
  const embedder = new EmbeddingService({ imagePool: rt.imagePool, textPool: rt.textPool, sink, metrics: createMetrics() })
  const reqs = [{ key: 'k1', input: 'red shoes for running' }, { key: 'k2', input: 'a blue car' }]
  // Two callers: the first starts the flight, the second joins it (single flight).
  const results = await Promise.allSettled([
    embedder.compute('text', reqs, Date.now() + 10_000),
    embedder.compute('text', reqs.slice(0, 1), Date.now() + 10_000),
  ])
  for (const r of results) {
    assert.equal(r.status, 'rejected')
    assert.match(String((r as PromiseRejectedResult).reason), /redis write failed/)
  }
  await new Promise((r) => setImmediate(r))
  await new Promise((r) => setTimeout(r, 10))
  assert.deepEqual(unhandled, [])
  assert.equal((embedder as unknown as { inFlight: Map<string, unknown> }).inFlight.size, 0)
  // The keys are free again: a later call with a working sink computes them.
  const ok = new EmbeddingService({ imagePool: rt.imagePool, textPool: rt.textPool, sink: { store: async () => 0 }, metrics: createMetrics() })
  const again = await ok.compute('text', reqs, Date.now() + 10_000)
  assert.deepEqual(again.map((r) => r.ok), [true, true])
})
