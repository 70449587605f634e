import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { bufferToVector } from '../src/cache/vector-codec.ts'
import { build, waitFor } from '../support/app.ts'
import { BUNDLE_DIR, SAMPLE_DIR } from '../support/bundle.ts'
import { startImageOrigin } from '../support/image-origin.ts'
import { jobCount } from '../support/queue-harness.ts'
import { startRedis } from '../support/redis.ts'
import { sampleItems } from '../support/sample.ts'

// A rolling deploy: two real apps on one Redis and one prefix, serving two bundles whose image
// encoders differ (bundle B's outputs are offset by +100, bench/fleet/make-bundle-b.py). Each
// instance must embed only its own encoder version's jobs: a vector under a key of version A that
// was computed by encoder B (values near 100) would be the bug.

async function imageJobsDone(server: FastifyInstance): Promise<number> {
  const { values } = await server.metrics.jobs.get()
  return values.filter((v) => v.labels.outcome === 'done' && v.labels.modality === 'image').reduce((s, v) => s + v.value, 0)
}

test('two bundles on one Redis: each instance embeds only the jobs of its own image-encoder version', async (t) => {
  const dirB = mkdtempSync(join(tmpdir(), 'ctrserve-bundle-b-'))
  t.after(() => rmSync(dirB, { recursive: true, force: true }))
  execFileSync('python3', ['bench/fleet/make-bundle-b.py', BUNDLE_DIR, dirB], { stdio: ['ignore', 'ignore', 'inherit'] })
  const redis = await startRedis()
  t.after(() => redis.stop())
  const origin = await startImageOrigin(SAMPLE_DIR)
  t.after(() => origin.close())
  const admin = new Redis(redis.url)
  t.after(() => admin.disconnect())
  const common = { REDIS_URL: redis.url, REDIS_PREFIX: `qv-${randomBytes(3).toString('hex')}`, EMBED_BATCH_SIZE: 4 }
  const a = await build(t, { ...common })
  const b = await build(t, { ...common, MODEL_DIR: dirB })
  const versionA = a.bundle.manifest.encoders.image.version
  const versionB = b.bundle.manifest.encoders.image.version
  assert.notEqual(versionA, versionB)

  const items = sampleItems(origin.baseUrl, 8).map(({ id, image_url }) => ({ id, image_url }))
  // The same images asked of both instances, interleaved, so both versions' jobs wait side by side.
  for (const server of [a, b, a, b]) {
    const res = await server.inject({ method: 'POST', url: '/predict', payload: { items } })
    assert.equal(res.statusCode, 200)
  }
  const urls = items.map((i) => i.image_url as string)
  await waitFor(async () => ((await admin.exists(...urls.map((u) => a.keyOf('image', u)), ...urls.map((u) => b.keyOf('image', u)))) === 16 ? true : undefined), 60_000)
  const firstValue = async (key: string): Promise<number> => {
    const bytes = await admin.getBuffer(key)
    assert.ok(bytes)
    return bufferToVector(bytes, a.bundle.manifest.oov.image.dim)?.[0] ?? NaN
  }
  for (const url of urls) {
    assert.ok(Math.abs(await firstValue(a.keyOf('image', url))) < 50, 'a version-A key holds encoder A\'s vector')
    assert.ok(await firstValue(b.keyOf('image', url)) > 50, 'a version-B key holds encoder B\'s vector')
  }
  assert.equal(await imageJobsDone(a), 8, 'A handled exactly its 8 jobs')
  assert.equal(await imageJobsDone(b), 8, 'B handled exactly its 8 jobs')
  assert.equal(await jobCount(a.metrics, 'failed') + await jobCount(b.metrics, 'failed'), 0)
})
