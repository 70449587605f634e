import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { loadBundle } from '../src/bundle/load-bundle.ts'
import { createSession, float32, releaseSession, runFloat32 } from '../src/onnx/ort-backend.ts'
import { BUNDLE_DIR } from '../support/bundle.ts'

// The backend on the bundle's real head: shapes and output checks, and the error that says how to fix a bad path.

test('runFloat32 returns the named outputs with the expected counts and refuses a wrong count', async (t) => {
  const bundle = await loadBundle(BUNDLE_DIR)
  const m = bundle.manifest
  const session = await createSession(join(bundle.dir, m.head.file), { threads: 1 })
  t.after(() => releaseSession(session))
  const n = 3
  const names = m.head.inputs
  const feeds = {
    [names.image]: float32(new Float32Array(n * m.oov.image.dim), [n, m.oov.image.dim]),
    [names.image_oov]: float32(new Float32Array(n).fill(1), [n, 1]),
    [names.text]: float32(new Float32Array(n * m.oov.text.dim), [n, m.oov.text.dim]),
    [names.text_oov]: float32(new Float32Array(n).fill(1), [n, 1]),
    [names.fields]: float32(new Float32Array(n * bundle.fieldsDim), [n, bundle.fieldsDim]),
  }
  const k = m.mdn.k
  const out = await runFloat32(session, feeds, m.head.outputs, { pi: n * k, mu: n * k, sigma: n * k })
  assert.equal(out.pi.length, n * k)
  for (let i = 0; i < n; i++) {
    const s = out.pi.subarray(i * k, i * k + k).reduce((a, b) => a + b, 0)
    assert.ok(Math.abs(s - 1) < 1e-5, `row ${i}: weights sum to ${s}`)
  }
  for (const v of out.sigma) assert.ok(v > 0)
  await assert.rejects(runFloat32(session, feeds, m.head.outputs, { pi: n * k + 1 }), /output pi has 12 values, expected 13/)
  await assert.rejects(runFloat32(session, feeds, { x: 'no_such_output' }), /no_such_output/)
})

test('createSession names the path and says how to check the bundle', async () => {
  await assert.rejects(createSession('/nonexistent/model.onnx', { threads: 1 }), /\/nonexistent\/model\.onnx.*ctrserve verify/)
})
