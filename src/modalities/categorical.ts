import type { CategoricalField } from '../bundle/manifest.ts'

const encoder = new TextEncoder()

/** MurmurHash3 x86 32-bit of the bytes, unsigned (same as sklearn.utils.murmurhash3_32(positive=True)). */
export function murmur3x86_32(bytes: Uint8Array, seed: number): number {
  const c1 = 0xcc9e2d51
  const c2 = 0x1b873593
  let h = seed >>> 0
  const n = bytes.length
  const blocks = n & ~3
  for (let i = 0; i < blocks; i += 4) {
    let k = (bytes[i] as number) | ((bytes[i + 1] as number) << 8) | ((bytes[i + 2] as number) << 16) | ((bytes[i + 3] as number) << 24)
    k = Math.imul(k, c1)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, c2)
    h ^= k
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  let k = 0
  switch (n & 3) {
    case 3: k ^= (bytes[blocks + 2] as number) << 16 // falls through
    case 2: k ^= (bytes[blocks + 1] as number) << 8 // falls through
    case 1:
      k ^= bytes[blocks] as number
      k = Math.imul(k, c1)
      k = (k << 15) | (k >>> 17)
      k = Math.imul(k, c2)
      h ^= k
  }
  h ^= n
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** Table row of one categorical value: 0 is the missing row (also for ""), hashed values fill rows 1..rows-1. */
export function categoricalRow(field: Pick<CategoricalField, 'hash' | 'rows'>, value: string): number {
  if (value.length === 0) return 0
  return 1 + (murmur3x86_32(encoder.encode(value), field.hash.seed) % (field.rows - 1))
}
