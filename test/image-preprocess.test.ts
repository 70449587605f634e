import { test } from 'node:test'
import assert from 'node:assert/strict'
import { crc32 } from 'node:zlib'
import sharp, { type Sharp } from 'sharp'
import { CtrError } from '../src/errors.ts'
import { decodePixels, pixelsSha256, preprocessImage, sniffFormat, writeTensor, type ImageInputSpec } from '../src/modalities/image/preprocess.ts'

// Every input image is generated here with sharp itself; the expected numbers follow from
// x = (px/255 − mean) / std (docs/bundle-format.md, "Image").

const spec = (width: number, height: number, extra: Partial<ImageInputSpec> = {}): ImageInputSpec => ({
  name: 'pixel_values', layout: 'NCHW', dtype: 'float32', height, width, channel_order: 'RGB',
  resize: { fit: 'fill', kernel: 'lanczos3' }, background: [255, 255, 255],
  mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], ...extra,
})

type Rgb = readonly [number, number, number]

const solid = (width: number, height: number, [r, g, b]: Rgb, alpha?: number) =>
  sharp({ create: { width, height, channels: alpha === undefined ? 3 : 4, background: { r, g, b, alpha: alpha ?? 1 } } })

/** Left half `left`, right half `right`, so orientation and frame order are visible in the output. */
function halves(width: number, height: number, left: Rgb, right: Rgb): Sharp {
  const raw = Buffer.alloc(width * height * 3)
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) raw.set(x < width / 2 ? left : right, (y * width + x) * 3)
  }
  return sharp(raw, { raw: { width, height, channels: 3 } })
}

function pixelAt(pixels: Uint8Array, width: number, x: number, y: number): number[] {
  const i = (y * width + x) * 3
  return [pixels[i], pixels[i + 1], pixels[i + 2]].map(Number)
}

function assertNear(actual: readonly number[], expected: readonly number[], tolerance: number, what: string): void {
  actual.forEach((v, i) => assert.ok(Math.abs(v - (expected[i] ?? Number.NaN)) <= tolerance,
    `${what}: ${JSON.stringify(actual)} vs ${JSON.stringify(expected)} ± ${tolerance}`))
}

function assertEveryPixel(pixels: Uint8Array, expected: Rgb, tolerance: number, what: string): void {
  for (let i = 0; i < pixels.length; i += 3) assertNear([...pixels.subarray(i, i + 3)], expected, tolerance, `${what} @${i / 3}`)
}

async function assertInvalid(bytes: Buffer, what: string, s: ImageInputSpec = spec(16, 16)): Promise<void> {
  await assert.rejects(preprocessImage(bytes, s), (err: unknown) => {
    assert.ok(err instanceof CtrError, `${what}: ${String(err)}`)
    assert.equal(err.code, 'CTR_ERR_IMAGE_INVALID', what)
    assert.equal(err.permanent, true, what)
    return true
  })
}

/** Deterministic noise, so JPEGs have enough entropy-coded data to cut in the middle. */
function noise(width: number, height: number): Sharp {
  const raw = Buffer.alloc(width * height * 3)
  let state = 12345
  for (let i = 0; i < raw.length; i++) {
    state = (state * 1103515245 + 12345) >>> 0
    raw[i] = state >>> 24
  }
  return sharp(raw, { raw: { width, height, channels: 3 } })
}

test('solid RGB PNG at the encoder size: shape, NCHW layout and normalised values within 1e-6', async () => {
  const png = await solid(16, 8, [200, 100, 50]).png().toBuffer()
  const { pixels, tensor } = await preprocessImage(png, spec(16, 8))
  assert.equal(pixels.length, 16 * 8 * 3)
  assert.equal(tensor.length, 3 * 16 * 8)
  assertEveryPixel(pixels, [200, 100, 50], 0, 'pixels')
  const plane = 16 * 8
  const expected = [200, 100, 50].map((px) => (px / 255 - 0.5) / 0.5)
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      assert.ok(Math.abs((tensor[c * plane + i] ?? Number.NaN) - (expected[c] ?? 0)) <= 1e-6, `channel ${c} at ${i}`)
    }
  }
})

test('mean/std per channel and BGR channel order are honoured', async () => {
  const png = await solid(4, 4, [255, 0, 51]).png().toBuffer()
  const s = spec(4, 4, { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], channel_order: 'BGR' })
  const { tensor, pixels } = await preprocessImage(png, s)
  assertNear([...pixels.subarray(0, 3)], [255, 0, 51], 0, 'pixels stay RGB')
  const expectedRgb = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (51 / 255 - 0.406) / 0.225]
  assertNear([tensor[0] ?? 0, tensor[16] ?? 0, tensor[32] ?? 0], [expectedRgb[2] ?? 0, expectedRgb[1] ?? 0, expectedRgb[0] ?? 0],
    1e-6, 'BGR planes')
})

test('pixels decoded alone and normalised into a batch at an offset give the same tensor, bit for bit', async () => {
  // The image loader keeps decoded pixels while a batch loads and writes the batch in place.
  const s = spec(16, 12, { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], channel_order: 'BGR' })
  const per = 3 * 16 * 12
  const inputs = [await halves(16, 12, [255, 0, 51], [3, 140, 250]).png().toBuffer(), await noise(40, 30).jpeg().toBuffer()]
  const batch = new Float32Array(3 * per).fill(Number.NaN)
  for (const [j, bytes] of inputs.entries()) {
    const pixels = await decodePixels(bytes, s)
    const whole = await preprocessImage(bytes, s)
    assert.deepEqual([...pixels], [...whole.pixels], `pixels of input ${j}`)
    writeTensor(pixels, s, batch, (j + 1) * per)
    assert.deepEqual([...batch.subarray((j + 1) * per, (j + 2) * per)], [...whole.tensor], `tensor of input ${j} at slot ${j + 1}`)
  }
  assert.ok(batch.subarray(0, per).every(Number.isNaN), 'slot 0 untouched')
  assert.throws(() => writeTensor(new Uint8Array(10), s, batch, 0), /10 bytes for 16x12x3/)
})

test('a different decoded size is resized (fill) to the encoder size', async () => {
  const png = await solid(64, 24, [10, 200, 30]).png().toBuffer()
  const { pixels, tensor } = await preprocessImage(png, spec(16, 16))
  assert.equal(pixels.length, 16 * 16 * 3)
  assert.equal(tensor.length, 3 * 16 * 16)
  assertEveryPixel(pixels, [10, 200, 30], 1, 'resized solid')
})

test('alpha is flattened onto the background colour', async () => {
  const transparent = await solid(8, 8, [0, 0, 0], 0).png().toBuffer()
  assertEveryPixel((await preprocessImage(transparent, spec(8, 8))).pixels, [255, 255, 255], 0, 'transparent on white')
  const halfRed = await solid(8, 8, [255, 0, 0], 0.5).png().toBuffer()
  assert.equal((await sharp(halfRed).metadata()).channels, 4)
  assertEveryPixel((await preprocessImage(halfRed, spec(8, 8))).pixels, [255, 127, 127], 1, 'half red on white')
  const onBlack = await preprocessImage(halfRed, spec(8, 8, { background: [0, 0, 0] }))
  assertEveryPixel(onBlack.pixels, [128, 0, 0], 1, 'half red on black')
})

test('grayscale, grayscale with alpha, 16-bit and CMYK inputs become 8-bit sRGB', async () => {
  const gray = await solid(8, 8, [90, 90, 90]).toColourspace('b-w').png().toBuffer()
  assert.equal((await sharp(gray).metadata()).channels, 1)
  assertEveryPixel((await preprocessImage(gray, spec(8, 8))).pixels, [90, 90, 90], 0, 'gray')

  const grayAlpha = await solid(8, 8, [0, 0, 0], 0).toColourspace('b-w').png().toBuffer()
  assert.equal((await sharp(grayAlpha).metadata()).channels, 2)
  assertEveryPixel((await preprocessImage(grayAlpha, spec(8, 8))).pixels, [255, 255, 255], 0, 'gray+alpha')

  const deep = await solid(8, 8, [10, 20, 30]).toColourspace('rgb16').png().toBuffer()
  assert.equal((await sharp(deep).metadata()).depth, 'ushort')
  assertEveryPixel((await preprocessImage(deep, spec(8, 8))).pixels, [10, 20, 30], 0, '16-bit')

  const deepAlpha = await solid(8, 8, [255, 0, 0], 0.5).toColourspace('rgb16').png().toBuffer()
  assert.deepEqual(await sharp(deepAlpha).metadata().then((m) => [m.depth, m.channels]), ['ushort', 4])
  assertEveryPixel((await preprocessImage(deepAlpha, spec(8, 8))).pixels, [255, 127, 127], 1, '16-bit with alpha on white')

  const cmyk = await solid(8, 8, [200, 100, 50]).toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer()
  assert.equal((await sharp(cmyk).metadata()).space, 'cmyk')
  // The CMYK round trip goes through ICC profiles (libvips 8.18 gives 199,94,21), so the check is
  // three sRGB channels near the source colour and in its order.
  const fromCmyk = (await preprocessImage(cmyk, spec(8, 8))).pixels
  assertEveryPixel(fromCmyk, [200, 100, 50], 40, 'cmyk')
  const [r = 0, g = 0, b = 0] = fromCmyk
  assert.ok(r > g && g > b, `cmyk hue order ${r},${g},${b}`)
})

test('EXIF orientation 6 is applied before the size comparison and the resize', async () => {
  // Stored 40×20 with red on the left; orientation 6 displays it rotated 90° clockwise: 20×40, red on top.
  const stored = await halves(40, 20, [255, 0, 0], [0, 0, 255]).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer()
  const meta = await sharp(stored).metadata()
  assert.deepEqual([meta.width, meta.height, meta.orientation], [40, 20, 6])

  const upright = await preprocessImage(stored, spec(20, 40))
  assertNear(pixelAt(upright.pixels, 20, 10, 5), [255, 0, 0], 30, 'top is red')
  assertNear(pixelAt(upright.pixels, 20, 10, 35), [0, 0, 255], 30, 'bottom is blue')
  assertNear(pixelAt(upright.pixels, 20, 2, 20 - 6), [255, 0, 0], 40, 'left column above the middle is red')

  const square = await preprocessImage(stored, spec(32, 32))
  assert.equal(square.pixels.length, 32 * 32 * 3)
  assertNear(pixelAt(square.pixels, 32, 16, 4), [255, 0, 0], 30, 'resized: top is red')
  assertNear(pixelAt(square.pixels, 32, 16, 28), [0, 0, 255], 30, 'resized: bottom is blue')

  const unrotated = await halves(40, 20, [255, 0, 0], [0, 0, 255]).jpeg({ quality: 95 }).toBuffer()
  const plain = await preprocessImage(unrotated, spec(32, 32))
  assertNear(pixelAt(plain.pixels, 32, 4, 16), [255, 0, 0], 30, 'no EXIF: left is red')
  assertNear(pixelAt(plain.pixels, 32, 28, 16), [0, 0, 255], 30, 'no EXIF: right is blue')
})

test('animated GIF and WebP: only the first frame is used', async () => {
  const red = await solid(8, 8, [255, 0, 0]).png().toBuffer()
  const blue = await solid(8, 8, [0, 0, 255]).png().toBuffer()
  const gif = await sharp([red, blue], { join: { animated: true } }).gif().toBuffer()
  const webp = await sharp([red, blue], { join: { animated: true } }).webp({ lossless: true }).toBuffer()
  for (const [name, bytes] of [['gif', gif], ['webp', webp]] as const) {
    assert.equal((await sharp(bytes).metadata()).pages, 2, `${name} has two frames`)
    const { pixels } = await preprocessImage(bytes, spec(8, 8))
    assert.equal(pixels.length, 8 * 8 * 3)
    assertEveryPixel(pixels, [255, 0, 0], 0, `${name} first frame`)
  }
})

test('decompression bombs are refused from the header, before decoding', async () => {
  // 20000×20000 = 400 MP in about 1 MB of PNG.
  const bomb = await sharp({ create: { width: 20000, height: 20000, channels: 3, background: '#000' }, limitInputPixels: false })
    .png({ compressionLevel: 9 }).toBuffer()
  assert.ok(bomb.length < 2_000_000)
  const started = performance.now()
  await assertInvalid(bomb, 'sharp-made 20000x20000 png')
  assert.ok(performance.now() - started < 2000, 'refused without decoding 400 MP')

  // A 1×1 PNG whose header claims 20000×20000: only the header is ever read.
  const tiny = Buffer.from(await solid(1, 1, [1, 2, 3]).png().toBuffer())
  tiny.writeUInt32BE(20000, 16)
  tiny.writeUInt32BE(20000, 20)
  tiny.writeUInt32BE(crc32(tiny.subarray(12, 29)), 29)
  assert.deepEqual(await sharp(tiny, { limitInputPixels: false }).metadata().then((m) => [m.width, m.height]), [20000, 20000])
  await assertInvalid(tiny, 'png claiming 20000x20000')

  // A smaller limit from the caller applies too.
  const ordinary = await solid(100, 100, [0, 0, 0]).png().toBuffer()
  await assert.rejects(preprocessImage(ordinary, spec(16, 16), { limitInputPixels: 5000 }), /exceeds/)
  assert.equal((await preprocessImage(ordinary, spec(16, 16), { limitInputPixels: 10_000 })).pixels.length, 16 * 16 * 3)
})

test('truncated, corrupt, empty and non-image inputs fail with a permanent IMAGE_INVALID', async () => {
  const jpeg = await noise(64, 64).jpeg({ quality: 90 }).toBuffer()
  const png = await noise(64, 64).png().toBuffer()
  assert.equal((await preprocessImage(jpeg, spec(16, 16))).pixels.length, 16 * 16 * 3)
  await assertInvalid(jpeg.subarray(0, Math.floor(jpeg.length * 0.6)), 'truncated jpeg')
  await assertInvalid(png.subarray(0, Math.floor(png.length * 0.6)), 'truncated png')
  await assertInvalid(jpeg.subarray(0, 200), 'jpeg header only')
  await assertInvalid(Buffer.alloc(0), 'empty')
  const random = noise(64, 16)
  await assertInvalid(await random.raw().toBuffer(), 'random bytes')
  await assertInvalid(Buffer.from('<!doctype html><html><body>not an image</body></html>'), 'html')
  const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>')
  await assertInvalid(svg, 'svg is not an accepted format')
  const tiff = await solid(8, 8, [1, 2, 3]).tiff().toBuffer()
  await assertInvalid(tiff, 'tiff is not an accepted format')
})

test('a spec the pipeline cannot honour is a bundle error, not an image error', async () => {
  const png = await solid(4, 4, [0, 0, 0]).png().toBuffer()
  // A spec that bypassed the manifest schema (the type forbids it; the run-time check still refuses it).
  const bad = spec(4, 4, { resize: { fit: 'cover', kernel: 'bogus' } as unknown as ImageInputSpec['resize'], std: [0.5, 0, 0.5] })
  await assert.rejects(preprocessImage(png, bad), (err: unknown) =>
    err instanceof CtrError && err.code === 'CTR_ERR_BAD_BUNDLE' && !err.permanent
    && /resize\.fit cover/.test(err.message) && /resize\.kernel bogus/.test(err.message) && /std/.test(err.message))
})

test('pixelsSha256 is the hex SHA-256 of the HWC bytes', async () => {
  assert.equal(pixelsSha256(new Uint8Array([0x61, 0x62, 0x63])),
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  const png = await solid(8, 8, [1, 2, 3]).png().toBuffer()
  const a = await preprocessImage(png, spec(8, 8))
  const b = await preprocessImage(Buffer.from(png), spec(8, 8))
  assert.equal(pixelsSha256(a.pixels), pixelsSha256(b.pixels))
  assert.notEqual(pixelsSha256(a.pixels), pixelsSha256((await preprocessImage(png, spec(8, 4))).pixels))
})

test('sniffFormat agrees with sharp on every accepted format and knows nothing else', async () => {
  const img = solid(8, 8, [10, 20, 30])
  for (const [format, bytes] of [
    ['jpeg', await img.clone().jpeg().toBuffer()], ['png', await img.clone().png().toBuffer()],
    ['gif', await img.clone().gif().toBuffer()], ['webp', await img.clone().webp().toBuffer()],
  ] as const) {
    assert.equal((await sharp(bytes).metadata()).format, format)
    assert.equal(sniffFormat(bytes), format)
  }
  assert.equal(sniffFormat(await img.clone().tiff().toBuffer()), undefined)
  assert.equal(sniffFormat(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>')), undefined)
  assert.equal(sniffFormat(Buffer.from([0xff, 0xd8])), undefined, 'too short to tell')
})
