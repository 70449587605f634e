// GENERATED from docs/manifest.schema.json by scripts/gen-manifest-types.ts: do not edit.
// Run `npm run gen:manifest-types` after changing the schema.

/**
 * This interface was referenced by `Manifest`'s JSON-Schema
 * via the `definition` "Sha256".
 */
export type Sha256 = string
/**
 * A path inside the bundle folder: relative, no '..' segment.
 *
 * This interface was referenced by `Manifest`'s JSON-Schema
 * via the `definition` "RelativePath".
 */
export type RelativePath = string
/**
 * @minItems 3
 * @maxItems 3
 *
 * This interface was referenced by `Manifest`'s JSON-Schema
 * via the `definition` "RGB".
 */
export type RGB = [number, number, number]
/**
 * This interface was referenced by `Manifest`'s JSON-Schema
 * via the `definition` "FieldSpec".
 */
export type FieldSpec = CategoricalField | NumericField
/**
 * Also a property name in requests: letters, digits, '_', '.', '-'; at most 64 characters.
 *
 * This interface was referenced by `Manifest`'s JSON-Schema
 * via the `definition` "FieldName".
 */
export type FieldName = string
/**
 * @minItems 1
 *
 * This interface was referenced by `Manifest`'s JSON-Schema
 * via the `definition` "NonEmptyNumbers".
 */
export type NonEmptyNumbers = [number, ...number[]]

/**
 * models/<bundle>/manifest.json: the contract between training (Python validates it before writing) and the server (Ajv at load). docs/bundle-format.md explains each part.
 */
export interface Manifest {
  format: 1
  name: string
  version: string
  created?: string
  files: {
    [k: string]: FileEntry
  }
  encoders: {
    image: ImageEncoderSpec
    text: TextEncoderSpec
  }
  head: {
    file: RelativePath
    sha256: Sha256
    inputs: {
      image: string
      image_oov: string
      text: string
      text_oov: string
      fields: string
    }
    outputs: {
      pi: string
      mu: string
      sigma: string
    }
    /**
     * Optional: the head in two graphs (training/head_split.py). `file` maps the image input to its first dense layer's output (`dim` values); `rest.file` takes that output (`rest.input`) in place of the image input and gives the head's outputs. Scorer threads run the first once per cached image.
     */
    image_projection?: {
      file: RelativePath
      sha256: Sha256
      output: string
      dim: number
      rest: {
        file: RelativePath
        sha256: Sha256
        input: string
      }
    }
  }
  oov: {
    image: VectorFile
    text: VectorFile
  }
  /**
   * @maxItems 64
   */
  fields: FieldSpec[]
  hash_test_vectors: {
    field: string
    value: string
    row: number
  }[]
  mdn: {
    k: number
    gauss_hermite: {
      nodes: NonEmptyNumbers
      weights: NonEmptyNumbers
    }
    quantiles: {
      [k: string]: number
    }
    /**
     * Optional: settings of the quantile bisection (see docs/bundle-format.md, Mixture statistics).
     */
    bisection?: {
      iterations: number
      span_sigmas: number
    }
  }
  calibration: {
    x: NonEmptyNumbers
    y: NonEmptyNumbers
  }
  parity?: {
    dir: RelativePath
    items: RelativePath
    expected: RelativePath
  }
  report?: RelativePath
  /**
   * Informative: largest element-wise difference between PyTorch and onnxruntime at export.
   */
  onnx_vs_pytorch_max_abs_diff?: {
    [k: string]: number
  }
}
/**
 * This interface was referenced by `Manifest`'s JSON-Schema
 * via the `definition` "FileEntry".
 */
export interface FileEntry {
  sha256: Sha256
  bytes: number
}
/**
 * This interface was referenced by `Manifest`'s JSON-Schema
 * via the `definition` "ImageEncoderSpec".
 */
export interface ImageEncoderSpec {
  file: RelativePath
  sha256: Sha256
  version: string
  arch?: string
  input: ImageInputSpec
  output: EncoderOutput
}
/**
 * This interface was referenced by `Manifest`'s JSON-Schema
 * via the `definition` "ImageInputSpec".
 */
export interface ImageInputSpec {
  name: string
  layout: 'NCHW'
  dtype: 'float32'
  height: number
  width: number
  /**
   * order of the tensor's colour planes; pixels are decoded as RGB and reordered
   */
  channel_order: 'RGB' | 'BGR'
  resize: {
    fit: 'fill'
    kernel: 'nearest' | 'cubic' | 'mitchell' | 'lanczos2' | 'lanczos3'
  }
  background: RGB
  mean: RGB
  std: RGB
}
/**
 * This interface was referenced by `Manifest`'s JSON-Schema
 * via the `definition` "EncoderOutput".
 */
export interface EncoderOutput {
  name: string
  dim: number
}
/**
 * This interface was referenced by `Manifest`'s JSON-Schema
 * via the `definition` "TextEncoderSpec".
 */
export interface TextEncoderSpec {
  file: RelativePath
  sha256: Sha256
  version: string
  arch?: string
  tokenizer_dir: RelativePath
  max_length: number
  pad_id: number
  inputs: {
    input_ids: string
    attention_mask: string
  }
  output: EncoderOutput
}
/**
 * This interface was referenced by `Manifest`'s JSON-Schema
 * via the `definition` "VectorFile".
 */
export interface VectorFile {
  file: RelativePath
  dim: number
}
/**
 * row = 0 when missing or empty, else 1 + murmur3_x86_32(utf8(value), seed) % (rows - 1); multi-valued fields average the rows of their values.
 *
 * This interface was referenced by `Manifest`'s JSON-Schema
 * via the `definition` "CategoricalField".
 */
export interface CategoricalField {
  name: FieldName
  scope: 'context' | 'item'
  type: 'categorical'
  multi: boolean
  hash: {
    algo: 'murmur3_x86_32'
    seed: number
  }
  rows: number
  dim: number
  table: RelativePath
}
/**
 * row = 0 when missing, else 1 + bisect_right(edges, x); rows = len(edges) + 2.
 *
 * This interface was referenced by `Manifest`'s JSON-Schema
 * via the `definition` "NumericField".
 */
export interface NumericField {
  name: FieldName
  scope: 'context' | 'item'
  type: 'numeric'
  multi?: false
  edges: number[]
  rows: number
  dim: number
  table: RelativePath
}
