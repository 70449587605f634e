// Encoder worker life cycle (issue 13): close() lets every worker release its ONNX session and exit
// on its own (exit code 0, not terminate()'s 1); a worker that fails at start is restarted with an
// exponential back-off, not in a loop; a worker that crashes after it started is replaced at once.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Worker } from 'node:worker_threads'
import { loadBundle } from '../src/bundle/load-bundle.ts'
import { EncoderPool, respawnDelayMs } from '../src/embedding/encoder-pool.ts'
import { createEncoderPools } from '../src/embedding/encoder-pools.ts'
import type { EncoderWorkerData } from '../src/embedding/encoder-protocol.ts'
import { waitFor } from '../support/app.ts'
import { BUNDLE_DIR } from '../support/bundle.ts'

function workersOf(pool: EncoderPool): Worker[] {
  return pool.workers()
}

test('respawn delays double from 100 ms up to 30 s; a worker that had started is replaced at once', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 9, 10, 20].map(respawnDelayMs), [0, 100, 200, 400, 800, 25_600, 30_000, 30_000])
})

test('close: every worker releases its session and exits with code 0; a crashed one is replaced first', async () => {
  const bundle = await loadBundle(BUNDLE_DIR)
  const warnings: object[] = []
  const { imagePool, textPool } = await createEncoderPools(bundle, { imageWorkers: 2, ortThreads: 1 }, { warn: (o) => warnings.push(o) })
  const titles = ['a red bicycle', 'ten facts about tyres']
  assert.equal((await textPool.embedTexts(titles)).embeddings.length, 2 * bundle.manifest.encoders.text.output.dim)

  // A crash after start: replaced with no delay.
  const [victim] = workersOf(imagePool)
  await victim?.terminate()
  await waitFor(async () => (imagePool.restarts === 1 ? true : undefined), 30_000, 20)
  assert.deepEqual(warnings.map((w) => (w as { delayMs?: number }).delayMs), [0])
  await imagePool.ready()

  const workers = [...workersOf(imagePool), ...workersOf(textPool)]
  assert.equal(workers.length, 3)
  const codes = workers.map((w) => new Promise<number>((r) => w.once('exit', r)))
  await Promise.all([imagePool.close(), textPool.close()])
  assert.deepEqual(await Promise.all(codes), [0, 0, 0], 'released and exited, not terminated (code 1)')
  await assert.rejects(textPool.embedTexts(titles), /closed/)
})

test('a worker that cannot start is restarted with growing delays and stops when the pool closes', async () => {
  const bundle = await loadBundle(BUNDLE_DIR)
  const enc = bundle.manifest.encoders.text
  const data: EncoderWorkerData = {
    kind: 'text', modelPath: '/nonexistent/model.onnx', intraOpThreads: 1, inputName: enc.inputs.input_ids,
    outputName: enc.output.name, dim: enc.output.dim, tokenizerDir: '/nonexistent', maxLength: 8,
  }
  const delays: number[] = []
  const pool = new EncoderPool(data, 1, { warn: (o) => { delays.push((o as { delayMs: number }).delayMs) } })
  await assert.rejects(pool.ready(), /exited at start|cannot load ONNX model/)
  await waitFor(async () => (delays.length >= 4 ? true : undefined), 60_000, 20)
  await pool.close()
  assert.deepEqual(delays.slice(0, 4), [100, 200, 400, 800])
  // The replacement waiting for its delay does not start once the pool is closed.
  const after = pool.restarts
  await assert.rejects(pool.ready(), /pool is closed|exited at start/)
  assert.equal(pool.restarts, after, 'no restart after close')
})
