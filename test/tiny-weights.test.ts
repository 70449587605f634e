import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import protobuf from 'protobufjs/minimal.js'
import { loadBundle } from '../src/bundle/load-bundle.ts'
import { countTinyWeights } from '../src/onnx/tiny-weights.ts'
import { BUNDLE_DIR } from '../support/bundle.ts'

// Weights below 1e-30 made the head 27x slower on an Intel Xeon (README "Subnormal weights"): the
// bundle loader counts them in every ONNX file, as training/tiny_weights.py does, so the server can warn.

/** A ModelProto holding only graph.initializer: a raw_data FLOAT tensor, a packed float_data one, an INT64 one. */
function model(): Uint8Array {
  const tensor = (build: (w: protobuf.Writer) => void): Uint8Array => { const w = protobuf.Writer.create(); build(w); return w.finish() }
  const f32 = (xs: number[]): Uint8Array => new Uint8Array(Float32Array.from(xs).buffer)
  const raw = tensor((w) => { w.uint32((1 << 3) | 0).int64(4); w.uint32((2 << 3) | 0).int32(1); w.uint32((9 << 3) | 2).bytes(f32([1e-39, -3e-36, 2e-31, 0.5])) })
  const packed = tensor((w) => { w.uint32((2 << 3) | 0).int32(1); w.uint32((4 << 3) | 2).bytes(f32([5e-29, -1e-33, 0, 1])) })
  const ints = tensor((w) => { w.uint32((2 << 3) | 0).int32(7); w.uint32((9 << 3) | 2).bytes(new Uint8Array(16).fill(1)) })
  const graph = protobuf.Writer.create()
  for (const t of [raw, packed, ints]) graph.uint32((5 << 3) | 2).bytes(t)
  graph.uint32((1 << 3) | 2).string('node-like field, skipped')
  const m = protobuf.Writer.create()
  m.uint32((1 << 3) | 0).int64(8) // ir_version
  m.uint32((7 << 3) | 2).bytes(graph.finish())
  return m.finish()
}

test('countTinyWeights counts float32 initializer values with 0 < |w| < 1e-30, raw and packed, and nothing else', () => {
  // raw: 1e-39, -3e-36, 2e-31; packed: -1e-33 (5e-29, 0 and 1 kept); the INT64 tensor's bytes are not floats.
  assert.equal(countTinyWeights(model()), 4)
  assert.equal(countTinyWeights(new Uint8Array(0)), 0)
})

test('the committed bundle has no tiny weights; a bundle file with some is reported by the loader', async (t) => {
  assert.deepEqual((await loadBundle(BUNDLE_DIR)).tinyWeights, {})
  const dir = await mkdtemp(join(tmpdir(), 'ctr-tiny-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  await cp(BUNDLE_DIR, dir, { recursive: true })
  const bytes = model()
  await writeFile(join(dir, 'head_image.onnx'), bytes)
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { files: Record<string, { sha256: string; bytes: number }> }
  manifest.files['head_image.onnx'] = { sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.byteLength }
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest))
  assert.deepEqual((await loadBundle(dir)).tinyWeights, { 'head_image.onnx': 4 })
})
