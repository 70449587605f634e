// Property-based fuzzing of POST /predict (issue 6, hostile input): random and malformed bodies
// through the real app on the real bundle. Whatever arrives, the answer is a 200 with finite
// numbers or a 4xx from the error catalog naming the field; never a 5xx, never a crash, never a
// polluted Object.prototype.
//
// The background queue is off (no consumer, misses not enqueued) so fuzzed URLs are never fetched,
// and every generated image URL points at a closed loopback port anyway (budget policy computes
// inline). Load shedding is off: a long JSON parse on a busy machine must not read as a 503 here
// (test/hardening-overload.test.ts covers shedding).
import { STATUS_CODES } from 'node:http'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify, { type FastifyInstance } from 'fastify'
import fc from 'fast-check'
import { loadConfig } from '../src/config.ts'
import { configPlugin, predictPlugin, registerEmbedding, registerScoring } from '../src/plugins/index.ts'
import healthRoutes from '../src/routes/health.ts'
import predictRoutes from '../src/routes/predict.ts'
import { installErrorHandler } from '../src/routes/error-handler.ts'
import { serverOptions } from '../src/server-options.ts'
import type { PredictResult } from '../src/predict/predict-service.ts'
import { BUNDLE_DIR } from '../support/bundle.ts'
import { freePort } from '../support/redis.ts'

const BODY_LIMIT = 8 * 1024 * 1024

async function buildFuzzApp(t: { after(fn: () => Promise<unknown>): void }): Promise<FastifyInstance> {
  // Budgets of a second or more: a body that waits longer than its budget to be scored gets a 503
  // (the budget guarantee), and this machine is shared; timing is not what this test is about.
  const config = loadConfig({ MODEL_DIR: BUNDLE_DIR, LOG_LEVEL: 'silent', MAX_EVENT_LOOP_DELAY_MS: 0, IMAGE_FETCH_TIMEOUT_MS: 200, BUDGET_MS: 10_000 }, {})
  // The app's resources without a queue: misses are dropped, nothing is fetched in the background.
  const server = Fastify(serverOptions(config))
  installErrorHandler(server)
  await server.register(configPlugin, { config })
  await registerEmbedding(server)
  await registerScoring(server)
  await server.register(predictPlugin, { misses: 'nowhere' })
  await server.register(healthRoutes)
  await server.register(predictRoutes)
  await server.ready()
  t.after(() => server.close())
  return server
}

// ---- generators -------------------------------------------------------------------------------

const ITEM_CAT = ['publisher', 'category', 'language'] as const
const ITEM_NUM = ['age_hours', 'hist_ctr', 'title_len'] as const
const CTX_CAT = ['device', 'country', 'site', 'segment'] as const
const PROTO_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf'] as const

/** Strings a hostile client sends: lone surrogates, RTL and zero-width marks, emoji, NUL, long runs. */
const oddString = fc.oneof(
  fc.string({ maxLength: 40, unit: 'binary' }),
  fc.string({ maxLength: 20, unit: 'grapheme' }),
  fc.constantFrom('\uD800', '\uDFFF', 'a\uD83Dz', '\u202Egnp.exe', '\u200B\u200C\u200D\uFEFF', '🚗🚙👨‍👩‍👧', '\u0000', '', ' ', 'null',
    '%00', '../../etc/passwd', '<script>', '${jndi:x}', '\r\n\r\nHTTP/1.1 200', 'ﷺ', 'Ω≈ç√∫', '\u0301\u0301\u0301'),
  fc.constantFrom(...PROTO_KEYS),
)

let closedPort = 9
/** Only ever a closed loopback port: nothing off this machine is contacted, nothing here answers. */
const loopbackUrl = fc.tuple(fc.constantFrom('http', 'https', 'HTTP'), fc.constantFrom('127.0.0.1', '[::1]'), fc.string({ maxLength: 30 }))
  .map(([s, h, p]) => `${s}://${h}:${closedPort}/${encodeURIComponent(p)}`)
const badUrl = fc.oneof(
  fc.constantFrom('file:///etc/passwd', 'gopher://127.0.0.1/', 'javascript:alert(1)', 'data:image/png;base64,AAAA', 'ftp://x/',
    '//127.0.0.1/a.jpg', 'http:/x', ' http://127.0.0.1/', 'htp://x'),
  oddString,
)

const finite = fc.double({ noNaN: true, noDefaultInfinity: true })

const validItem = fc.record({
  id: fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }),
  image_url: fc.oneof(loopbackUrl, fc.constant('')),
  title: fc.string({ maxLength: 100, unit: 'grapheme' }),
  categorical: fc.record({
    publisher: fc.string({ maxLength: 30 }),
    tags: fc.array(oddString.filter((s) => s.length <= 256), { maxLength: 6 }),
    x_extra: fc.string({ maxLength: 10 }),
  }, { requiredKeys: [] }),
  numeric: fc.dictionary(fc.constantFrom(...ITEM_NUM, 'x_num'), finite, { maxKeys: 4 }),
}, { requiredKeys: ['id'] })

const validBody = fc.record({
  context: fc.record({
    categorical: fc.dictionary(fc.constantFrom(...CTX_CAT, 'x_ctx'), fc.string({ maxLength: 30, unit: 'grapheme' }), { maxKeys: 5 }),
    numeric: fc.dictionary(fc.constantFrom('hour', 'x_ctx_num'), finite, { maxKeys: 2 }),
  }, { requiredKeys: [] }),
  items: fc.array(validItem, { minLength: 1, maxLength: 5 }),
  // `budget` computes titles inline on the text worker: a fifth of the bodies keeps the suite fast.
  options: fc.record({ budget_ms: fc.integer({ min: 1_000, max: 10_000 }), miss_policy: fc.constantFrom('oov', 'oov', 'oov', 'oov', 'budget') }, { requiredKeys: [] }),
}, { requiredKeys: ['items'] })

/** Any JSON value, with hostile keys and strings and moderately deep nesting. */
const hostileJson: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof({ depthSize: 'small', withCrossShrink: true },
    fc.constant(null), fc.boolean(), fc.integer(), finite, oddString, badUrl,
    fc.array(tie('v'), { maxLength: 5 }),
    fc.dictionary(fc.oneof(oddString, fc.constantFrom('items', 'context', 'options', 'id', 'categorical', 'numeric', 'image_url', 'title', ...ITEM_CAT, ...ITEM_NUM, ...CTX_CAT)), tie('v'), { maxKeys: 5 }),
  ),
})).v

type Path = ReadonlyArray<string | number>

/** Paths of a valid body worth breaking: every object and array, and every leaf. */
function pathsOf(v: unknown, prefix: Path = []): Path[] {
  const out: Path[] = [prefix]
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...pathsOf(x, [...prefix, i])))
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...pathsOf(x, [...prefix, k]))
  return out
}

function valueAt(root: unknown, path: Path): unknown {
  let node = root
  for (const k of path) node = (node as Record<string | number, unknown>)[k]
  return node
}

function setAt(root: unknown, path: Path, value: unknown): unknown {
  if (path.length === 0) return value
  const copy: unknown = structuredClone(root)
  let node = copy as Record<string | number, unknown>
  for (const k of path.slice(0, -1)) node = node[k] as Record<string | number, unknown>
  node[path[path.length - 1] as string | number] = value
  return copy
}

/** A valid body with one place replaced by something hostile (wrong type, odd value, extra key). */
const mutatedBody = fc.tuple(validBody, fc.nat(), fc.oneof(hostileJson, badUrl, fc.constantFrom(1e308, -1e308, -0, 0, 2 ** 53 + 1)), oddString)
  .map(([body, pick, value, extraKey]) => {
    const paths = pathsOf(body)
    const path = paths[pick % paths.length] as Path
    const target = valueAt(body, path)
    const isObject = target !== null && typeof target === 'object' && !Array.isArray(target)
    const mutated = pick % 3 === 0 && isObject ? setAt(body, [...path, extraKey], value) : setAt(body, path, value)
    return JSON.stringify(mutated) ?? 'null'
  })

/**
 * JSON text JSON.stringify never writes: 1e999 / -1e999 (Infinity after parsing), NaN tokens,
 * `__proto__` / constructor.prototype keys at every level, deep nesting, duplicate keys.
 */
const rawJsonText = fc.tuple(validBody, fc.nat(), fc.constantFrom(
  '1e999', '-1e999', 'NaN', 'Infinity', '-Infinity', '1e-999', '0x10', '01', '.5', '+1', 'undefined',
  '{"__proto__":{"polluted":"yes"}}', '{"constructor":{"prototype":{"polluted":"yes"}}}', '{"prototype":{"polluted":"yes"}}',
  '"\\ud800"', '"\\u0000"', '[' + '['.repeat(3000) + ']'.repeat(3000) + ']', '{"a":'.repeat(2000) + '1' + '}'.repeat(2000),
)).map(([body, pick, token]) => {
  const text = JSON.stringify(body)
  // Splice the token after a random `:` (a value position) or replace the whole body.
  const colons = [...text.matchAll(/":/g)].map((m) => (m.index ?? 0) + 2)
  if (colons.length === 0 || pick % 7 === 0) return token
  const at = colons[pick % colons.length] as number
  const end = findValueEnd(text, at)
  return text.slice(0, at) + token + text.slice(end)
})

/** The end of the JSON value starting at `at` in well-formed `text`. */
function findValueEnd(text: string, at: number): number {
  let depth = 0
  let inStr = false
  for (let i = at; i < text.length; i++) {
    const c = text[i]
    if (inStr) {
      if (c === '\\') i++
      else if (c === '"') { inStr = false; if (depth === 0) return i + 1 }
      continue
    }
    if (c === '"') inStr = true
    else if (c === '{' || c === '[') depth++
    else if (c === '}' || c === ']') { if (depth === 0) return i; depth--; if (depth === 0) return i + 1 }
    else if (c === ',' && depth === 0) return i
  }
  return text.length
}

/** Proto keys placed as own keys at a random level, including inside categorical and numeric. */
const protoKeyBody = fc.tuple(validBody, fc.nat(), fc.constantFrom(...PROTO_KEYS), fc.oneof(hostileJson, fc.constant({ polluted: 'yes' })))
  .map(([body, pick, key, value]) => {
    const objects = pathsOf(body).filter((p) => {
      const node = valueAt(body, p)
      return node !== null && typeof node === 'object' && !Array.isArray(node)
    })
    const path = objects[pick % objects.length] as Path
    const marker = '"\u0001MARK\u0001":0'
    const withMarker = setAt(body, [...path, '\u0001MARK\u0001'], 0)
    // JSON.stringify cannot write an own "__proto__" key from a literal; splice it in as text.
    return (JSON.stringify(withMarker) ?? '').replace(marker, `${JSON.stringify(key)}:${JSON.stringify(value) ?? 'null'}`)
  })

const contentTypes = fc.constantFrom('application/json', 'application/json; charset=utf-8', 'APPLICATION/JSON', 'text/plain',
  'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/octet-stream', 'application/json; charset=utf-16',
  'application/vnd.api+json', '', 'application/json;;;', 'image/jpeg', '*/*')
const rawBytes = fc.oneof(fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)), fc.string({ maxLength: 100, unit: 'binary' }).map((s) => Buffer.from(s)))

// ---- checks ------------------------------------------------------------------------------------

interface Reply { statusCode: number; body: string }

function isJsonText(payload: string | Buffer): boolean {
  try {
    JSON.parse(payload.toString())
    return true
  } catch {
    return false
  }
}

function assertNumbersFinite(v: unknown, where: string): void {
  if (typeof v === 'number') assert.ok(Number.isFinite(v), `${where} is not finite: ${v}`)
  else if (Array.isArray(v)) v.forEach((x, i) => assertNumbersFinite(x, `${where}/${i}`))
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) assertNumbersFinite(x, `${where}/${k}`)
}

/** The contract every reply must meet; `jsonBody` says whether the request carried JSON. */
function checkReply(res: Reply, jsonBody: boolean, sent: string): void {
  const ctx = `status ${res.statusCode} for ${sent.slice(0, 300)} → ${res.body.slice(0, 300)}`
  assert.ok(res.statusCode < 500, `5xx: ${ctx}`)
  if (res.statusCode === 200) {
    const r = JSON.parse(res.body) as PredictResult
    assert.ok(r.predictions.length > 0, ctx)
    for (const p of r.predictions) {
      assertNumbersFinite(p.ctr, 'ctr')
      assert.ok(p.ctr.mean >= 0 && p.ctr.mean <= 1, ctx)
    }
    return
  }
  assert.ok(res.statusCode >= 400, `unexpected ${ctx}`)
  const e = JSON.parse(res.body) as { code?: unknown; message?: unknown; statusCode?: unknown; error?: unknown }
  assert.equal(e.statusCode, res.statusCode, ctx)
  assert.equal(e.error, STATUS_CODES[res.statusCode], ctx)
  assert.ok(typeof e.code === 'string' && /^(CTR_ERR_|FST_)/.test(e.code), `code: ${ctx}`)
  assert.ok(typeof e.message === 'string' && e.message.length > 0, `message: ${ctx}`)
  if (jsonBody) assert.match(e.message as string, /^body(\/|:)/, `message names no field: ${ctx}`)
}

async function post(server: FastifyInstance, payload: string | Buffer, contentType = 'application/json'): Promise<Reply> {
  const headers: Record<string, string> = contentType ? { 'content-type': contentType } : {}
  const res = await server.inject({ method: 'POST', url: '/predict', headers, payload })
  return { statusCode: res.statusCode, body: res.body }
}

// ---- properties --------------------------------------------------------------------------------

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed)

test('POST /predict under 10,000+ random and malformed bodies: no 5xx, 4xx name the field, valid bodies score', async (t) => {
  closedPort = await freePort() // bound then released: nothing listens there
  const server = await buildFuzzApp(t)
  const protoBefore = Object.getOwnPropertyNames(Object.prototype).sort()
  const counts = { total: 0, ok: 0, client: 0 }
  const send = async (payload: string | Buffer, contentType = 'application/json'): Promise<Reply> => {
    const res = await post(server, payload, contentType)
    counts.total++
    if (res.statusCode === 200) counts.ok++
    else counts.client++
    const json = /^application\/json/i.test(contentType) && isJsonText(payload)
    checkReply(res, json, payload.toString())
    return res
  }
  const run = (arb: fc.Arbitrary<unknown>, numRuns: number, prop: (v: never) => Promise<void>): Promise<void> =>
    fc.assert(fc.asyncProperty(arb, prop as (v: unknown) => Promise<void>), { numRuns, seed: SEED, endOnFailure: true })

  await t.test('valid-shaped bodies: 200 with finite numbers, one prediction per item', () =>
    run(validBody, 1500, async (body: { items: unknown[] }) => {
      const res = await send(JSON.stringify(body))
      assert.equal(res.statusCode, 200, res.body.slice(0, 300))
      assert.equal((JSON.parse(res.body) as PredictResult).predictions.length, body.items.length)
    }))
  await t.test('arbitrary JSON values with hostile keys and strings', () =>
    run(hostileJson, 2500, async (v: unknown) => { await send(JSON.stringify(v) ?? 'null') }))
  await t.test('valid bodies with one place broken (wrong type, odd value, extra key)', () =>
    run(mutatedBody, 3000, async (text: string) => { await send(text) }))
  await t.test('JSON text with 1e999, NaN tokens, deep nesting', () =>
    run(rawJsonText, 1000, async (text: string) => { await send(text) }))
  await t.test('prototype-pollution keys at every level', () =>
    run(protoKeyBody, 1200, async (text: string) => {
      const res = await send(text)
      // secure-json-parse refuses __proto__ and constructor.prototype outright; other names are plain keys.
      if (/"(__proto__)":/.test(text) || /"constructor":\{[^}]*"prototype"/.test(text)) assert.equal(res.statusCode, 400, res.body)
    }))
  await t.test('raw bytes and wrong content types', () =>
    run(fc.tuple(fc.oneof(rawBytes, mutatedBody), contentTypes), 1000, async ([payload, ct]: [string | Buffer, string]) => { await send(payload, ct) }))

  t.diagnostic(`requests ${counts.total}: ${counts.ok} × 200, ${counts.client} × 4xx`)
  assert.ok(counts.total >= 10_000, `only ${counts.total} bodies sent`)
  assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), protoBefore, 'Object.prototype gained properties')
  assert.equal(({} as Record<string, unknown>).polluted, undefined)
  assert.equal((await server.inject({ url: '/healthz' })).statusCode, 200, 'still alive')
})

test('POST /predict with large payloads near and beyond the 8 MB body limit', async (t) => {
  closedPort = await freePort()
  const server = await buildFuzzApp(t)
  const big = (n: number): string => 'x'.repeat(n)
  const cases: Array<{ name: string; payload: string; expect: number }> = [
    { name: 'id of 7 MB', payload: JSON.stringify({ items: [{ id: big(7 * 1024 * 1024) }] }), expect: 400 },
    { name: 'title of 7 MB', payload: JSON.stringify({ items: [{ id: 'a', title: big(7 * 1024 * 1024) }] }), expect: 400 },
    { name: '9 MB body', payload: JSON.stringify({ items: [{ id: 'a', title: big(9 * 1024 * 1024) }] }), expect: 413 },
    { name: '200,000 items', payload: JSON.stringify({ items: Array.from({ length: 200_000 }, (_, i) => ({ id: String(i) })) }), expect: 400 },
    { name: '1,000 items at the limit', payload: JSON.stringify({ items: Array.from({ length: 1000 }, (_, i) => ({ id: String(i), title: `t${i % 50}` })) }), expect: 200 },
    { name: '60,000 tags', payload: JSON.stringify({ items: [{ id: 'a', categorical: { tags: Array.from({ length: 60_000 }, (_, i) => `t${i}`) } }] }), expect: 400 },
    { name: '100,000 unknown item keys', payload: JSON.stringify({ items: [Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`k${i}`, i]).concat([['id', 'a']]))] }), expect: 200 },
    { name: '5,000 fields in categorical', payload: JSON.stringify({ items: [{ id: 'a', categorical: Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`f${i}`, 'v'])) }] }), expect: 400 },
    { name: 'nesting 100,000 deep', payload: '{"items":[{"id":"a","x":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}]}', expect: 200 },
  ]
  for (const c of cases) {
    assert.ok(c.expect === 413 ? Buffer.byteLength(c.payload) > BODY_LIMIT : Buffer.byteLength(c.payload) <= BODY_LIMIT, c.name)
    const res = await post(server, c.payload)
    checkReply(res, c.expect !== 413, c.payload)
    assert.equal(res.statusCode, c.expect, `${c.name}: ${res.body.slice(0, 300)}`)
  }
  // Many mid-sized random bodies: nothing leaks across them.
  await fc.assert(fc.asyncProperty(fc.array(fc.string({ maxLength: 2000 }), { minLength: 100, maxLength: 2000 }), async (titles) => {
    const res = await post(server, JSON.stringify({ items: titles.map((title, i) => ({ id: `i${i}`, title })) }))
    checkReply(res, true, '(large)')
  }), { numRuns: 15, seed: SEED })
  assert.equal((await server.inject({ url: '/healthz' })).statusCode, 200)
})
