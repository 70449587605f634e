// Float32Array <-> Buffer as little-endian float32, the layout the bundle and Redis values use.

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/** A Buffer view of the vector's bytes (no copy on little-endian hosts). Do not mutate the vector while it is in flight. */
export function vectorToBuffer(vector: Float32Array): Buffer {
  if (HOST_IS_LITTLE_ENDIAN) return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength)
  const out = Buffer.allocUnsafe(vector.byteLength)
  for (let i = 0; i < vector.length; i++) out.writeFloatLE(vector[i] ?? 0, i * 4)
  return out
}

/**
 * The vector stored in `bytes`, or undefined when its length is not `dim` floats (a foreign or
 * truncated value is a miss, never a wrong embedding).
 *
 * A view is returned only when the Buffer owns its whole ArrayBuffer and is 4-byte aligned.
 * Otherwise the bytes are copied: a Float32Array needs byteOffset % 4 === 0, and a view into a
 * pooled or socket-chunk Buffer would keep that whole chunk alive for as long as the vector sits
 * in L1, which the byte budget would not see.
 */
export function bufferToVector(bytes: Uint8Array, dim: number): Float32Array | undefined {
  if (bytes.byteLength !== dim * 4 || dim <= 0) return undefined
  if (!HOST_IS_LITTLE_ENDIAN) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    const out = new Float32Array(dim)
    for (let i = 0; i < dim; i++) out[i] = view.getFloat32(i * 4, true)
    return out
  }
  const ownsBuffer = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
  if (ownsBuffer) return new Float32Array(bytes.buffer, 0, dim)
  const out = new Float32Array(dim)
  new Uint8Array(out.buffer).set(bytes)
  return out
}
