import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import sharp from 'sharp'
import { ROOT, ctrserve } from '../support/cli.ts'
import { startImageOrigin } from '../support/image-origin.ts'
import { readJsonl } from '../support/jsonl.ts'
import { rng } from '../support/random.ts'
import { startServerProcess } from '../support/server-process.ts'
import type { Manifest } from '../src/bundle/manifest.ts'
import type { PredictResult } from '../src/predict/predict-service.ts'

// A team's own log, with field names the synthetic world does not have, goes through the three
// commands of the README (training.fields, training.build, the server) and `ctrserve verify`.

const run = promisify(execFile)
const PYTHON = process.env.PYTHON ?? 'python3'

async function pythonReady(): Promise<boolean> {
  try {
    await run(PYTHON, ['-c', 'import torch, onnxruntime, tokenizers, jsonschema, training.build'], { cwd: ROOT })
    return true
  } catch {
    return false
  }
}

const BRANDS = ['acme', 'globex', 'initech', 'umbrella', 'hooli', 'stark']
const COLOURS = ['red', 'green', 'blue', 'black', 'white']
const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']

/** A 128×128 JPEG whose brightness carries part of the item's appeal (the image is informative). */
async function image(rand: () => number, bright: number): Promise<Buffer> {
  const px = Buffer.alloc(128 * 128 * 3)
  const base = [rand() * 255, rand() * 255, rand() * 255].map((c) => c * (0.3 + 0.7 * bright))
  for (let i = 0; i < px.length; i++) px[i] = Math.max(0, Math.min(255, (base[i % 3] as number) + (rand() - 0.5) * 40))
  return sharp(px, { raw: { width: 128, height: 128, channels: 3 } }).jpeg({ quality: 90 }).toBuffer()
}

interface Made { rowsPath: string; origin: Awaited<ReturnType<typeof startImageOrigin>>; httpItems: number; missing: number }

async function makeLog(dir: string): Promise<Made> {
  const rand = rng(12)
  await mkdir(join(dir, 'served'), { recursive: true })
  await mkdir(join(dir, 'local'), { recursive: true })
  const origin = await startImageOrigin(join(dir, 'served'))
  const items: Array<Record<string, unknown> & { appeal: number }> = []
  let httpItems = 0
  let missing = 0
  for (let i = 0; i < 120; i++) {
    const bright = rand()
    const brand = BRANDS[i % BRANDS.length] as string
    const colours = COLOURS.filter(() => rand() < 0.4)
    const price = Math.round(rand() * 20000) / 100
    let image_url: string | undefined
    if (i % 24 === 5) { image_url = `${origin.baseUrl}/gone-${i}.jpg`; missing++ } // 404: OOV in training
    else if (i % 24 === 7) image_url = undefined
    else if (i % 6 === 0) {
      await writeFile(join(dir, 'local', `sku-${i}.jpg`), await image(rand, bright))
      image_url = `local/sku-${i}.jpg`
    } else {
      await writeFile(join(dir, 'served', `sku-${i}.jpg`), await image(rand, bright))
      image_url = `${origin.baseUrl}/sku-${i}.jpg`
      httpItems++
    }
    const appeal = 0.6 * (BRANDS.indexOf(brand) / BRANDS.length) + 0.5 * bright + (colours.includes('red') ? 0.4 : 0) - price / 400
    items.push({ id: `sku/${i}`, title: `${brand} ${colours.join(' ')} widget model ${i % 9}`, image_url,
      categorical: { brand, colours }, numeric: { price }, appeal })
  }
  const lines: string[] = []
  for (let r = 0; r < 3000; r++) {
    const { appeal, ...item } = items[Math.floor(rand() * items.length)] as (typeof items)[number]
    const weekday = WEEKDAYS[Math.floor(rand() * 7)] as string
    const temp = Math.round(rand() * 35)
    const z = -3.2 + appeal + (weekday === 'sat' || weekday === 'sun' ? 0.4 : 0) + 0.01 * temp
    const p = 1 / (1 + Math.exp(-z))
    const impressions = 20 + Math.floor(rand() * 60)
    let clicks = 0
    for (let k = 0; k < impressions; k++) if (rand() < p) clicks++
    lines.push(JSON.stringify({ context: { categorical: { weekday }, numeric: { temp_c: temp } }, item, impressions, clicks }))
  }
  lines.splice(17, 0, JSON.stringify({ item: { id: 'bad' }, impressions: 3, clicks: 5 })) // reported, not used
  const rowsPath = join(dir, 'rows.jsonl')
  await writeFile(rowsPath, lines.join('\n') + '\n')
  return { rowsPath, origin, httpItems, missing }
}

test('a log with its own field names: fields → build --small → served by the real server, verify green', { timeout: 900_000 }, async (t) => {
  if (!(await pythonReady())) {
    t.skip('python3 with training/requirements.txt is not installed')
    return
  }
  const dir = await mkdtemp(join(tmpdir(), 'ctr-own-data-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const made = await makeLog(dir)
  t.after(() => made.origin.close())
  const fieldsPath = join(dir, 'fields.json')
  const bundle = join(dir, 'models', 'my-model')

  // 1. infer the spec (the bad row is reported with its line; 1 invalid row is allowed)
  const f = await run(PYTHON, ['-m', 'training.fields', '--data', made.rowsPath, '--out', fieldsPath, '--max-invalid', '1'], { cwd: ROOT })
  assert.match(f.stderr, /rows\.jsonl:18: clicks \(5\) > impressions \(3\)/)
  const spec = JSON.parse(await readFile(fieldsPath, 'utf8')) as { fields: Array<{ name: string; scope: string; type: string; multi?: boolean }> }
  assert.deepEqual(spec.fields.map((x) => `${x.scope}/${x.type}/${x.name}${x.multi ? '[]' : ''}`),
    ['item/categorical/brand', 'item/categorical/colours[]', 'item/numeric/price', 'context/categorical/weekday', 'context/numeric/temp_c'])

  // 2. build (small mode: random CNN weights, one epoch per stage)
  const b = await run(PYTHON, ['-m', 'training.build', '--small', '--data', made.rowsPath, '--fields', fieldsPath,
    '--out', bundle, '--work', join(dir, 'work'), '--image-root', dir, '--max-invalid', '1', '--parity', '30'],
  { cwd: ROOT, maxBuffer: 64 << 20, env: { ...process.env, OMP_NUM_THREADS: '1' } })
  assert.match(b.stdout, /rows: 3000 valid of 3001 \(1 invalid\), 120 items/)
  const manifest = JSON.parse(await readFile(join(bundle, 'manifest.json'), 'utf8')) as Manifest
  assert.deepEqual(manifest.fields.map((x) => x.name), ['brand', 'colours', 'price', 'weekday', 'temp_c'])
  const report = JSON.parse(await readFile(join(bundle, 'report', 'report.json'), 'utf8')) as { image_failures: Record<string, number> }
  assert.deepEqual(report.image_failures, { 'HTTP 404': made.missing, 'no image_url': 5 })
  assert.ok((made.origin.hits.get(`/sku-1.jpg`) ?? 0) >= 1, 'training fetched the images over HTTP')

  // 3. the real server on the new bundle, and ctrserve verify on its parity fixtures
  // A --small model trained for seconds can have a steep calibration map, which magnifies float32
  // differences between ORT and PyTorch: seen once at p99 3.4e-6 against the 1e-6 default set for
  // the reference bundle. 1e-5 still fails any real parity fault (those show at 1e-3 and above).
  const v = await ctrserve(['verify', '--max-p99', '1e-5'], { MODEL_DIR: bundle })
  assert.equal(v.code, 0, `${v.stdout}\n${v.stderr}`)
  assert.match(v.stdout, /pixel digest mismatches: 0; token id mismatches: 0/)
  assert.match(v.stdout, /OK: within thresholds/)

  const server = await startServerProcess({ MODEL_DIR: bundle, IMAGE_ALLOWED_HOSTS: '127.0.0.1', REDIS_URL: '' })
  t.after(async () => { server.kill('SIGTERM'); await server.exited() })
  const fixtures = readJsonl<{ id: string; context: object; item: Record<string, unknown>; image_file: string; text_oov: boolean; image_oov: boolean }>(join(bundle, 'parity', 'items.jsonl'))
  const expected = readJsonl<{ mean: number }>(join(bundle, 'parity', 'expected.jsonl'))
  const i = fixtures.findIndex((x) => !x.text_oov)
  assert.ok(i >= 0, 'a fixture with a title')
  const fx = fixtures[i]!
  const parityOrigin = await startImageOrigin(bundle)
  t.after(() => parityOrigin.close())
  const item: Record<string, unknown> = { ...fx.item, id: fx.id }
  if (fx.image_oov) delete item.image_url
  else item.image_url = `${parityOrigin.baseUrl}/${fx.image_file}`
  const want = { image: fx.image_oov ? 'absent' : 'l1', text: 'l1' }
  const post = (body: object) => fetch(`${server.url}/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const ask = async () => (await (await post({ context: fx.context, items: [item] })).json()) as PredictResult
  const first = await ask()
  assert.deepEqual(first.warnings, [], 'every field of the request is a field of this bundle')
  // Image and title are embedded in the background after the first request; later ones read L1.
  let pred = first.predictions[0]!
  for (let k = 0; k < 400 && (pred.sources.image !== want.image || pred.sources.text !== want.text); k++) {
    await new Promise((r) => setTimeout(r, 50))
    pred = (await ask()).predictions[0]!
  }
  assert.deepEqual(pred.sources, want)
  assert.ok(Math.abs(pred.ctr.mean - expected[i]!.mean) <= 1e-5, `served ${pred.ctr.mean}, PyTorch ${expected[i]!.mean}`)

  const bad = await post({ context: { categorical: { weekday: 3 } }, items: [{ id: 'x', numeric: { price: 'cheap' } }] })
  assert.equal(bad.status, 400)
  assert.match(((await bad.json()) as { message: string }).message, /body\/context\/categorical\/weekday|body\/items\/0\/numeric\/price/)
  const old = (await (await post({ items: [{ id: 'x', categorical: { publisher: 'p1' } }] })).json()) as PredictResult
  assert.ok(old.warnings.some((w) => w.includes('categorical/publisher')), 'a synthetic-world field is unknown to this bundle')
})
