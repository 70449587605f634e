import { createHash } from 'node:crypto'
import sharp, { type KernelEnum } from 'sharp'
import { CtrError } from '../../errors.ts'

import type { ImageInputSpec } from '../../bundle/manifest.ts'

// One ImageInputSpec: the manifest's (generated from docs/manifest.schema.json). The checks below
// repeat the schema's for specs that did not come through the bundle loader.
export type { ImageInputSpec }

export interface PreprocessOptions {
  /** Decoded width × height above which an image is refused before its pixels are decoded. */
  readonly limitInputPixels?: number
}

export interface PreprocessedImage {
  /** HWC, RGB, uint8, after orientation, flattening and resize: what the encoder saw, for hashing. */
  readonly pixels: Uint8Array
  /** NCHW float32 with N = 1, channels in `spec.channel_order`, x = (px/255 − mean) / std. */
  readonly tensor: Float32Array
}

export const DEFAULT_LIMIT_INPUT_PIXELS = 25_000_000

// SVG, PDF, TIFF and the rest are refused: they are not ad images and widen the decoder surface.
const DECODABLE = new Set(['jpeg', 'png', 'webp', 'gif', 'heif'])

/**
 * Process-wide sharp settings. The operation cache only holds memory for images that never repeat;
 * one libvips thread per image keeps several concurrent decodes from oversubscribing the cores.
 */
export function configureSharp(opts: { concurrency?: number } = {}): void {
  sharp.cache(false)
  sharp.concurrency(opts.concurrency ?? 1)
}

let configured = false

function invalid(reason: string, cause?: unknown): CtrError {
  return new CtrError('IMAGE_INVALID', [reason], { permanent: true, cause })
}

function isKernel(name: string): name is keyof KernelEnum {
  return Object.hasOwn(sharp.kernel, name)
}

function checkSpec(spec: ImageInputSpec): void {
  const problems: string[] = []
  if (spec.layout !== 'NCHW') problems.push(`layout ${spec.layout}`)
  if (spec.dtype !== 'float32') problems.push(`dtype ${spec.dtype}`)
  if (spec.channel_order !== 'RGB' && spec.channel_order !== 'BGR') problems.push(`channel_order ${spec.channel_order}`)
  if (spec.resize.fit !== 'fill') problems.push(`resize.fit ${spec.resize.fit}`)
  if (!isKernel(spec.resize.kernel)) problems.push(`resize.kernel ${spec.resize.kernel}`)
  if (![spec.height, spec.width].every((n) => Number.isInteger(n) && n > 0)) problems.push('height/width')
  for (const key of ['background', 'mean', 'std'] as const) {
    if (spec[key].length !== 3) problems.push(`${key} needs 3 values`)
  }
  if (spec.std.some((s) => s === 0)) problems.push('std must not be 0')
  if (problems.length > 0) throw new CtrError('BAD_BUNDLE', ['encoders.image.input', problems.join(', ')])
}

/** 256-entry lookup per channel, so every pixel value maps to exactly one float32. */
function normalisationTables(spec: ImageInputSpec): Float32Array[] {
  return [0, 1, 2].map((c) => {
    const mean = spec.mean[c] ?? 0
    const std = spec.std[c] ?? 1
    return Float32Array.from({ length: 256 }, (_, px) => (px / 255 - mean) / std)
  })
}

// The tables of a spec, built once: building them per image cost as much as filling the tensor
// (CPU profile of `ctrserve warm`, loader thread). Keyed by object: a bundle's spec is one object.
const tablesBySpec = new WeakMap<ImageInputSpec, Float32Array[]>()

function toTensor(pixels: Uint8Array, spec: ImageInputSpec): Float32Array {
  const tensor = new Float32Array(3 * spec.height * spec.width)
  writeTensor(pixels, spec, tensor, 0)
  return tensor
}

/**
 * Writes the encoder input of `pixels` (HWC RGB uint8, `spec`'s size) into `out` at `offset` (CHW
 * float32, as `preprocessImage`'s tensor): a batch is filled in place from decoded pixels, which are
 * a quarter of the tensor's size while they wait for the rest of their batch.
 */
export function writeTensor(pixels: Uint8Array, spec: ImageInputSpec, out: Float32Array, offset: number): void {
  const plane = spec.height * spec.width
  if (pixels.length !== 3 * plane) throw new Error(`writeTensor: ${pixels.length} bytes for ${spec.width}x${spec.height}x3`)
  let tables = tablesBySpec.get(spec)
  if (!tables) {
    tables = normalisationTables(spec)
    tablesBySpec.set(spec, tables)
  }
  const order = spec.channel_order === 'BGR' ? [2, 1, 0] : [0, 1, 2]
  for (let target = 0; target < 3; target++) {
    const source = order[target] as number
    const table = tables[source] as Float32Array
    const at = offset + target * plane
    for (let i = 0, j = source; i < plane; i++, j += 3) out[at + i] = table[pixels[j] as number] as number
  }
}

async function orientedSize(bytes: Buffer, limitInputPixels: number): Promise<{ width: number; height: number }> {
  const meta = await sharp(bytes, { limitInputPixels, failOn: 'truncated' }).metadata()
  if (meta.format === undefined || !DECODABLE.has(meta.format)) throw invalid(`format ${meta.format ?? 'unknown'} is not accepted`)
  const width = meta.autoOrient?.width ?? meta.width
  const height = meta.autoOrient?.height ?? meta.height
  if (width === undefined || height === undefined) throw invalid('no dimensions')
  if (width * height > limitInputPixels) throw invalid(`${width}x${height} exceeds ${limitInputPixels} pixels`)
  return { width, height }
}

const HEIF_BRANDS = new Set(['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'hevm', 'hevs', 'mif1', 'msf1', 'avif', 'avis'])

/**
 * The accepted formats told from their first bytes, as libvips picks its loader; undefined when
 * unsure (the caller then asks sharp). Saves a second sharp call per image (header read, options
 * marshalling): a tenth of the image loader thread's time in `ctrserve warm`.
 */
export function sniffFormat(b: Buffer): 'jpeg' | 'png' | 'gif' | 'webp' | 'heif' | undefined {
  if (b.length < 12) return undefined
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg'
  if (b.readUInt32BE(0) === 0x89504e47 && b.readUInt32BE(4) === 0x0d0a1a0a) return 'png'
  const head = b.toString('latin1', 0, 12)
  if (head.startsWith('GIF87a') || head.startsWith('GIF89a')) return 'gif'
  if (head.startsWith('RIFF') && head.endsWith('WEBP')) return 'webp'
  if (head.slice(4, 8) === 'ftyp' && HEIF_BRANDS.has(head.slice(8, 12))) return 'heif'
  return undefined
}

/** Decode the first frame, orient, sRGB, flatten alpha, resize if needed, normalise (bundle-format.md "Image"). */
export async function preprocessImage(
  bytes: Buffer, spec: ImageInputSpec, opts: PreprocessOptions = {},
): Promise<PreprocessedImage> {
  const pixels = await decodePixels(bytes, spec, opts)
  return { pixels, tensor: toTensor(pixels, spec) }
}

/** `preprocessImage` up to the pixels (HWC, RGB, uint8, `spec`'s size); `writeTensor` normalises them. */
export async function decodePixels(bytes: Buffer, spec: ImageInputSpec, opts: PreprocessOptions = {}): Promise<Uint8Array> {
  if (!configured) {
    sharp.cache(false)
    configured = true
  }
  checkSpec(spec)
  if (bytes.length === 0) throw invalid('empty input')
  const limitInputPixels = opts.limitInputPixels ?? DEFAULT_LIMIT_INPUT_PIXELS
  try {
    // A known format skips the header read: the pixel limit is sharp's own (checked from the
    // header, before decoding), and a resize to the size the image already has changes no pixel
    // (checked on the 1500 sample images), so it is always asked for.
    const size = sniffFormat(bytes) === undefined ? await orientedSize(bytes, limitInputPixels) : undefined
    const [r, g, b] = spec.background
    // 'truncated' refuses short files ('none' would pad them with grey); the default, 'warning', would
    // also refuse real-world JPEGs whose only fault is a warning such as extraneous bytes before a marker.
    let pipeline = sharp(bytes, { limitInputPixels, failOn: 'truncated', pages: 1, page: 0 })
      .autoOrient()
      .flatten({ background: { r: r ?? 0, g: g ?? 0, b: b ?? 0 } })
    const kernel = spec.resize.kernel
    if ((size === undefined || size.width !== spec.width || size.height !== spec.height) && isKernel(kernel)) {
      pipeline = pipeline.resize(spec.width, spec.height, { fit: 'fill', kernel })
    }
    const { data, info } = await pipeline
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true })
    if (info.width !== spec.width || info.height !== spec.height || info.channels !== 3) {
      throw invalid(`decoded to ${info.width}x${info.height}x${info.channels}`)
    }
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  } catch (err) {
    if (err instanceof CtrError) throw err
    throw invalid(err instanceof Error ? err.message : String(err), err)
  }
}

export function pixelsSha256(pixels: Uint8Array): string {
  return createHash('sha256').update(pixels).digest('hex')
}
