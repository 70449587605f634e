import { test } from 'node:test'
import assert from 'node:assert/strict'
import { JsonBytes, float32Digits, float32Number } from '../src/util/json-bytes.ts'
import { rng } from '../support/random.ts'

// The byte writer behind the /predict response (src/util/json-bytes.ts): strings and doubles as
// JSON.stringify writes them, float32 values as their shortest round-tripping decimal.

const text = (write: (w: JsonBytes) => void): string => {
  const w = new JsonBytes(16)
  w.reserve(4096)
  write(w)
  return Buffer.from(w.take()).toString('utf8')
}

/** Float32 values from random bit patterns: every exponent, subnormals, both signs. */
function float32s(n: number, seed: number): number[] {
  const r = rng(seed)
  const bits = new Uint32Array(1)
  const f = new Float32Array(bits.buffer)
  const out: number[] = []
  while (out.length < n) {
    bits[0] = Math.floor(r() * 2 ** 32)
    if (Number.isFinite(f[0])) out.push(f[0] as number)
  }
  return out
}

test('a float32 is written as the shortest decimal that reads back as the same float32, in JSON number notation', () => {
  const values = [...float32s(200_000, 5), 0.5, 0.1, 1, 100, 1e21, 1e-7, 1.5e-7, 123456789, 3.4028234663852886e38, 1.401298464324817e-45, -2.5, 16777216]
    .map((x) => Math.fround(x))
  let digitsTotal = 0
  for (const x of values) {
    const s = text((w) => w.float32(x))
    const back = Number(s)
    // The object form's number is the wire form's, bit for bit (-0 aside: JSON writes it as 0).
    assert.ok(Object.is(float32Number(x), back) || (x === 0 && float32Number(x) === 0), `float32Number(${x}) = ${float32Number(x)}, the text reads ${back}`)
    assert.equal(Math.fround(back), x, `${x} written as ${s} reads back as another float32`)
    // Canonical notation: what Number::toString (hence JSON.stringify) writes for that decimal.
    assert.equal(String(back), s, `${x}: ${s} is not in JSON.stringify's notation`)
    const digits = s.replace(/^-/, '').replace(/e.*$/, '').replace('.', '').replace(/^0+/, '').replace(/0+$/, '').length
    digitsTotal += digits
    assert.ok(digits <= 9, `${x}: ${s} has ${digits} digits`)
    // Shortest: the nearest decimal with one digit fewer does not read back as x.
    if (digits > 1) assert.notEqual(Math.fround(Number(x.toPrecision(digits - 1))), x, `${x}: ${s} is not the shortest`)
  }
  // Random float32 values need 8–9 digits; their widened doubles 16–17.
  assert.ok(digitsTotal / values.length < 9 && digitsTotal / values.length > 7, `mean digits ${digitsTotal / values.length}`)
})

test('float32: zero, negative zero and non-finite values are written as JSON.stringify writes them', () => {
  for (const x of [0, -0, Number.NaN, Infinity, -Infinity]) {
    assert.equal(text((w) => w.float32(x)), JSON.stringify(x))
    assert.equal(float32Digits(x), 0)
  }
})

test('numbers and strings are written byte for byte as JSON.stringify writes them', () => {
  const r = rng(9)
  const numbers = [...Array.from({ length: 5000 }, () => (r() - 0.5) * 10 ** Math.floor(r() * 60 - 30)), 0, -0, Number.NaN, Infinity, -Infinity, 1e21, 1e-7, 5e-324]
  for (const x of numbers) assert.equal(text((w) => w.number(x)), JSON.stringify(x))
  const odd = ['', 'plain-id_42', 'é', '"', '\\', '\u2028', '😀', '\u0000', '\n', '\ud800', 'a\udc00b', '\u007f', '~']
  for (const s of odd) assert.equal(text((w) => w.string(s)), JSON.stringify(s))
})

test('the buffer grows when reserved past its size and keeps what was written', () => {
  const w = new JsonBytes(8)
  w.ascii('[')
  for (let i = 0; i < 1000; i++) {
    w.reserve(64)
    if (i > 0) w.byte(0x2c)
    w.number(i / 7)
  }
  w.reserve(1)
  w.byte(0x5d)
  assert.deepEqual(JSON.parse(Buffer.from(w.take()).toString('utf8')), Array.from({ length: 1000 }, (_, i) => i / 7))
})
