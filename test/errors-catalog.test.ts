// The error catalog is the only way input errors are made (issue 13): every plain `throw new Error`
// left in src/ is an internal fault by design (listed here with the reason; see src/errors.ts), and
// every catalog entry is used.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { ERRORS } from '../src/errors.ts'

const SRC = join(import.meta.dirname, '../src')

/** file → number of plain `throw new Error`, each an internal fault (a bug or a broken install, not input). */
const INTERNAL_FAULTS: Readonly<Record<string, number>> = {
  'onnx/ort-backend.ts': 3, // model fails to load / output missing or mis-shaped: the bundle was verified at load
  'queue/lua-script.ts': 1, // 'pipeline discarded' (ioredis gave no replies): caught by the enqueue as a failed try
  'queue/memory-queue.ts': 1, // start() called twice: a programming error
  'queue/redis-queue.ts': 4, // start() twice or after close(): programming errors; whenReady() timing out (tests); 'closed' (internal control flow, caught by enqueue)
  'embedding/encoder-worker.ts': 5, // loaded outside a worker thread, or without the options its kind needs; its image loader thread died (the worker dies with it and the pool replaces it)
  'embedding/image-loader-worker.ts': 1, // loaded outside a worker thread
  'cli/score.ts': 1, // a `score` worker process died (its own stderr says why)
  'scoring/scorer-pool.ts': 2, // a scorer thread answered outside the protocol: a bug
  'scoring/scorer-worker.ts': 3, // loaded outside a worker thread; a vector slab it was not given; slots with projections for a bundle without a split head (bugs)
  'scoring/image-projections.ts': 1, // a vector slab it was not given (a bug)
  'modalities/image/preprocess.ts': 1, // writeTensor given pixels of another size than the spec's: a bug in its caller (decodePixels checks the decoded size)
  'cache/cluster-seeds.ts': 1, // a parse detail: config.ts reports it as CTR_ERR_BAD_CONFIG naming REDIS_CLUSTER_NODES
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [])
}

test('plain Errors in src/ are exactly the internal faults listed', () => {
  const found: Record<string, number> = {}
  for (const file of sources(SRC)) {
    const n = (readFileSync(file, 'utf8').match(/throw new Error\(/g) ?? []).length
    if (n > 0) found[relative(SRC, file)] = n
  }
  assert.deepEqual(found, INTERNAL_FAULTS)
})

test('every catalog entry is used outside the catalog', () => {
  const text = sources(SRC).filter((f) => !f.endsWith('/errors.ts')).map((f) => readFileSync(f, 'utf8')).join('\n')
  const unused = Object.keys(ERRORS).filter((name) => !text.includes(`'${name}'`) && !text.includes(`ERRORS.${name}`))
  assert.deepEqual(unused, [])
})
