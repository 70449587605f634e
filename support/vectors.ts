// Float32 vectors for the cache tests: random contents and their exact bytes.

/** The vector's own bytes (no copy), to compare vectors bit for bit. */
export function bytesOf(v: Float32Array): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength)
}

/**
 * Uniform in (−1, 1); with `wideRange`, each value is also scaled by 10^k, k in −5…4, so that
 * round trips are checked across exponents, not only near 1.
 */
export function randomVector(dim: number, opts: { wideRange?: boolean; random?: () => number } = {}): Float32Array {
  const random = opts.random ?? Math.random
  const v = new Float32Array(dim)
  for (let i = 0; i < dim; i++) v[i] = (random() * 2 - 1) * (opts.wideRange ? 10 ** Math.floor(random() * 10 - 5) : 1)
  return v
}
