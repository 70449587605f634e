import protobuf from 'protobufjs/minimal.js'

// Float32 weights of an ONNX file with 0 < |w| < 1e-30. Training with weight decay leaves such
// weights (parameters without gradient shrink by the same factor every step), and on Intel cores
// every multiply that takes or makes a subnormal runs in microcode: ctr-synth 1.4.0's head took
// 8.2 ms per 100 rows on an Intel Xeon instead of 0.31 ms (README "Subnormal weights"). The build
// sets them to zero (training/tiny_weights.py, the same threshold); this finds a bundle that was
// not, so the server can say so at start. Read with protobufjs's wire reader: the file is an ONNX
// ModelProto, and only graph.initializer (field 7, then 5) is walked.

export const TINY_WEIGHT = 1e-30

const WIRE_VARINT = 0
const WIRE_LENGTH = 2
const FLOAT = 1 // TensorProto.DataType.FLOAT
const EXTERNAL = 1 // TensorProto.DataLocation.EXTERNAL

/** The message fields of `bytes` with this field number and wire type length-delimited, as sub-arrays. */
function* lengthFields(bytes: Uint8Array, field: number): Generator<Uint8Array> {
  const r = protobuf.Reader.create(bytes)
  while (r.pos < r.len) {
    const tag = r.uint32()
    if (tag >>> 3 === field && (tag & 7) === WIRE_LENGTH) {
      const len = r.uint32()
      yield bytes.subarray(r.pos, r.pos + len)
      r.skip(len)
    } else {
      r.skipType(tag & 7)
    }
  }
}

/** Little-endian float32 values of `bytes` (raw_data or packed float_data) with 0 < |w| < TINY_WEIGHT. */
function countIn(bytes: Uint8Array): number {
  const length = bytes.byteLength >> 2
  // A view where the bytes are aligned (most are), else a copy; little-endian as the bundle's .f32 files.
  const values = bytes.byteOffset % 4 === 0
    ? new Float32Array(bytes.buffer, bytes.byteOffset, length)
    : new Float32Array(new Uint8Array(bytes.subarray(0, length * 4)).buffer)
  let n = 0
  for (let i = 0; i < length; i++) {
    const a = Math.abs(values[i] as number)
    if (a !== 0 && a < TINY_WEIGHT) n++
  }
  return n
}

/** Tiny float32 weights of one TensorProto (raw_data or packed float_data); 0 for other types. */
function tinyInTensor(bytes: Uint8Array): number {
  const r = protobuf.Reader.create(bytes)
  let type = 0
  let location = 0
  // Read in place once the type is known (it may follow the data in the wire format).
  const parts: Uint8Array[] = []
  while (r.pos < r.len) {
    const tag = r.uint32()
    const field = tag >>> 3
    const wire = tag & 7
    if (field === 2 && wire === WIRE_VARINT) type = r.int32()
    else if (field === 14 && wire === WIRE_VARINT) location = r.int32()
    else if ((field === 9 || field === 4) && wire === WIRE_LENGTH) parts.push(r.bytes())
    else r.skipType(wire)
  }
  if (type !== FLOAT || location === EXTERNAL) return 0
  return parts.reduce((n, p) => n + countIn(p), 0)
}

/** How many float32 initializer values of an ONNX model lie in (0, 1e-30) in magnitude. */
export function countTinyWeights(model: Uint8Array): number {
  let n = 0
  for (const graph of lengthFields(model, 7)) {
    for (const tensor of lengthFields(graph, 5)) n += tinyInTensor(tensor)
  }
  return n
}

/** What to tell an operator whose bundle has tiny weights (the server's start-up log, ctrserve verify). */
export function tinyWeightsAdvice(bundleDir: string): string {
  return `ONNX weights below ${TINY_WEIGHT}: on Intel CPUs their subnormal arithmetic can make the head and the encoders many times slower; set them to zero with \`python -m training.tiny_weights ${bundleDir}\` (README "Subnormal weights")`
}
