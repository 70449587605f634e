// A JSON writer straight into UTF-8 bytes: no string per member, no rope to flatten, no encoding
// pass at the end. For output whose shape is known in advance (the /predict predictions array):
// the caller writes the punctuation and keys as pre-encoded literals, and values through here.

const utf8 = new TextEncoder()

/** Pre-encoded bytes of a JSON fragment (keys, punctuation), written with `JsonBytes.raw`. */
export function literal(fragment: string): Uint8Array {
  return utf8.encode(fragment)
}

export class JsonBytes {
  private buf: Uint8Array
  private pos = 0
  private list = '[]'
  private at = 1

  constructor(initialBytes = 64 * 1024) {
    this.buf = new Uint8Array(initialBytes)
  }

  /** Starts a new document (the buffer is kept). */
  reset(): void {
    this.pos = 0
  }

  /** Room for `bytes` more bytes (call before a run of writes whose size is bounded). */
  reserve(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + bytes))
    next.set(this.buf.subarray(0, this.pos))
    this.buf = next
  }

  raw(bytes: Uint8Array): void {
    const n = bytes.length
    // TypedArray.set's fixed cost is several times a short copy's (keys and punctuation are short).
    if (n > 32) {
      this.buf.set(bytes, this.pos)
    } else {
      const buf = this.buf
      const at = this.pos
      for (let i = 0; i < n; i++) buf[at + i] = bytes[i] as number
    }
    this.pos += n
  }

  byte(b: number): void {
    this.buf[this.pos++] = b
  }

  /**
   * A number as JSON.stringify writes it (shortest round trip; non-finite → null). V8 formats it
   * (its number-to-string cache helps repeated values); the ASCII digits are copied, not encoded.
   * At most 25 bytes.
   */
  number(x: number): void {
    if (x !== x || x === Infinity || x === -Infinity) {
      this.ascii('null')
      return
    }
    this.ascii('' + x)
  }

  /**
   * A float32 value (read from a Float32Array) as the shortest decimal that reads back as the same
   * float32 (6 to 9 digits, as numpy prints a float32), where `number` would write the shortest
   * decimal of the double it widens to (17 digits, most of them noise). Non-finite → null.
   * At most 16 bytes.
   */
  float32(x: number): void {
    const d = float32Digits(x)
    if (d === 0) {
      this.number(x)
      return
    }
    this.pos = writeDecimal(this.buf, this.pos, x < 0, d, DIGITS.exponent)
  }

  /**
   * Loads numbers for `nextNumber` to write one by one, in order: one JSON.stringify over them all
   * formats each number straight into V8's buffer, where `number` makes a string per number
   * (0.24 against 0.45 µs a number, measured).
   */
  numbers(values: readonly number[]): void {
    this.list = JSON.stringify(values)
    this.at = 1
  }

  /** The next number loaded by `numbers` (at most 25 bytes). */
  nextNumber(): void {
    const list = this.list
    const buf = this.buf
    let pos = this.pos
    let i = this.at
    for (let c = list.charCodeAt(i); c !== 0x2c && c !== 0x5d; c = list.charCodeAt(++i)) buf[pos++] = c
    this.at = i + 1
    this.pos = pos
  }

  /** Passes over the next number loaded by `numbers` without writing it. */
  skipNumber(): void {
    const list = this.list
    let i = this.at
    for (let c = list.charCodeAt(i); c !== 0x2c && c !== 0x5d; c = list.charCodeAt(++i));
    this.at = i + 1
  }

  /** A JSON string as JSON.stringify writes it. At most 6 × s.length + 2 bytes. */
  string(s: string): void {
    const buf = this.buf
    let pos = this.pos
    buf[pos++] = 0x22
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i)
      // Anything needing an escape or more than one byte takes the general path.
      if (c < 0x20 || c === 0x22 || c === 0x5c || c > 0x7e) {
        this.pos = this.pos + utf8.encodeInto(JSON.stringify(s), buf.subarray(this.pos)).written
        return
      }
      buf[pos++] = c
    }
    buf[pos++] = 0x22
    this.pos = pos
  }

  /** Characters known to be ASCII and to need no escape (digits, fixed keys). */
  ascii(s: string): void {
    const buf = this.buf
    let pos = this.pos
    for (let i = 0; i < s.length; i++) buf[pos++] = s.charCodeAt(i)
    this.pos = pos
  }

  /** The document so far, in a buffer of its own (transferable; the writer's buffer is reused). */
  take(): Uint8Array {
    return this.buf.slice(0, this.pos)
  }
}

const scratch = new JsonBytes(32)
const latin1 = new TextDecoder('latin1')

/**
 * The number a float32 value is written as (JsonBytes.float32): what JSON.parse of the response
 * gives, for the object form of a prediction to equal the wire form. m × 10^e with |e| ≤ 22 is one
 * correctly rounded multiply or divide of exact doubles, so it equals parsing the text (84–101 ns
 * a value against 0.6–0.8 µs for writing and parsing the text, which other exponents take).
 */
export function float32Number(x: number): number {
  const m = float32Digits(x)
  const e = DIGITS.exponent
  if (m !== 0 && e >= -22 && e <= 22) {
    const v = e >= 0 ? m * (POW10[POW_BIAS + e] as number) : m / (POW10[POW_BIAS - e] as number)
    return x < 0 ? -v : v
  }
  scratch.reset()
  scratch.float32(x)
  return Number(latin1.decode(scratch.take()))
}

// 10^k for k in [−POW_BIAS, POW_BIAS], each the double nearest to it.
const POW_BIAS = 64
const POW10 = Float64Array.from({ length: 2 * POW_BIAS + 1 }, (_, i) => Number(`1e${i - POW_BIAS}`))
const DIGITS = { exponent: 0 }
const FLT_MIN = 1.1754943508222875e-38
const LOG10_2 = Math.log10(2)
const F32 = new Float32Array(1)
const U32 = new Uint32Array(F32.buffer)

/**
 * The digits of the shortest decimal m × 10^(exponent) that reads back as the float32 x, as an
 * integer m of 1 to 9 digits without trailing zeros (the exponent is left in DIGITS.exponent); 0
 * when x is 0 or not finite, or in the (never seen) case no candidate of ≤ 9 digits checks out.
 * Candidates are the nearest 9-, 8-, 7-… digit decimals.
 */
export function float32Digits(x: number): number {
  if (x === 0 || x !== x || x === Infinity || x === -Infinity) return 0
  const a = x < 0 ? -x : x
  // Decimal exponent from the binary one (Math.log10 cost as much as the rest), then corrected.
  F32[0] = a
  const e2 = ((U32[0] as number) >>> 23) - 127
  let e = Math.floor(e2 * LOG10_2)
  if (a >= (POW10[POW_BIAS + e + 1] as number)) e++
  // Subnormals have a smaller exponent than their bits say.
  while (a < (POW10[POW_BIAS + e] as number)) e--
  // From 9 digits down: when the nearest p-digit decimal does not read back, no shorter one does
  // (a shorter one, padded, would be a p-digit decimal at least as near).
  let best = 0
  let bestK = 0
  for (let p = 9; p >= 1; p--) {
    const k = p - 1 - e
    const scale = POW10[POW_BIAS + k]
    if (scale === undefined) break
    const m = Math.round(a * scale)
    if (Math.fround(k >= 0 ? m / scale : m * (POW10[POW_BIAS - k] as number)) !== a) break
    best = m
    bestK = k
    // Normal float32 values: 6-digit decimals are spaced wider than an ulp, so a round-tripping
    // 6-digit m with its trailing zeros stripped is already the shortest.
    if (p <= 6 && a >= FLT_MIN) break
  }
  if (best === 0) return 0
  let exponent = -bestK
  while (best % 10 === 0) {
    best /= 10
    exponent++
  }
  DIGITS.exponent = exponent
  return best
}

/**
 * m × 10^exponent (m an integer of at most 9 digits) in ECMAScript Number::toString's notation
 * (what JSON.stringify writes): plain decimals for 1e-7 ≤ |x| < 1e21, else d.ddde±n.
 */
function writeDecimal(buf: Uint8Array, pos: number, negative: boolean, m: number, exponent: number): number {
  let len = 0
  for (let t = m; t > 0; t = (t / 10) | 0) len++
  // The value is 0.d1d2…dlen × 10^n.
  const n = len + exponent
  if (negative) buf[pos++] = 0x2d
  if (n >= len && n <= 21) {
    pos = writeInt(buf, pos, m, len)
    for (let i = len; i < n; i++) buf[pos++] = 0x30
  } else if (n > 0 && n <= 21) {
    const whole = Math.floor(m / (POW10[POW_BIAS + len - n] as number))
    pos = writeInt(buf, pos, whole, n)
    buf[pos++] = 0x2e
    pos = writeInt(buf, pos, m - whole * (POW10[POW_BIAS + len - n] as number), len - n)
  } else if (n > -6 && n <= 0) {
    buf[pos++] = 0x30
    buf[pos++] = 0x2e
    for (let i = n; i < 0; i++) buf[pos++] = 0x30
    pos = writeInt(buf, pos, m, len)
  } else {
    const lead = Math.floor(m / (POW10[POW_BIAS + len - 1] as number))
    buf[pos++] = 0x30 + lead
    if (len > 1) {
      buf[pos++] = 0x2e
      pos = writeInt(buf, pos, m - lead * (POW10[POW_BIAS + len - 1] as number), len - 1)
    }
    buf[pos++] = 0x65
    let ex = n - 1
    buf[pos++] = ex < 0 ? 0x2d : 0x2b
    if (ex < 0) ex = -ex
    pos = writeInt(buf, pos, ex, ex >= 10 ? 2 : 1)
  }
  return pos
}

/** "00" … "99" as ASCII pairs. */
const PAIRS = Uint8Array.from({ length: 200 }, (_, i) => 0x30 + (i & 1 ? (i >> 1) % 10 : Math.floor((i >> 1) / 10)))

/** The integer v in exactly `width` digits (leading zeros kept), two digits per division. */
function writeInt(buf: Uint8Array, pos: number, v: number, width: number): number {
  let i = pos + width
  let left = width
  while (left >= 2) {
    const q = (v / 100) | 0
    const r = (v - q * 100) << 1
    buf[--i] = PAIRS[r + 1] as number
    buf[--i] = PAIRS[r] as number
    v = q
    left -= 2
  }
  if (left === 1) buf[--i] = 0x30 + v
  return pos + width
}
