// Types of models/<bundle>/manifest.json (docs/bundle-format.md). The manifest is the single source
// of truth shared with training; nothing here repeats its constants.

export interface ImageInputSpec {
  readonly name: string
  readonly layout: 'NCHW'
  readonly dtype: 'float32'
  readonly height: number
  readonly width: number
  readonly channel_order: 'RGB'
  readonly resize: { readonly fit: 'fill'; readonly kernel: string }
  readonly background: readonly [number, number, number]
  readonly mean: readonly [number, number, number]
  readonly std: readonly [number, number, number]
}

export interface EncoderCommon {
  readonly file: string
  readonly sha256: string
  readonly version: string
  readonly arch?: string
  readonly output: { readonly name: string; readonly dim: number }
}

export interface ImageEncoderSpec extends EncoderCommon {
  readonly input: ImageInputSpec
}

export interface TextEncoderSpec extends EncoderCommon {
  readonly tokenizer_dir: string
  readonly max_length: number
  readonly pad_id: number
  readonly inputs: { readonly input_ids: string; readonly attention_mask: string }
}

export interface FieldSpec {
  readonly name: string
  readonly scope: 'context' | 'item'
  readonly type: 'categorical' | 'numeric'
  readonly multi?: boolean
  readonly hash?: { readonly algo: 'murmur3_x86_32'; readonly seed: number }
  readonly edges?: readonly number[]
  readonly rows: number
  readonly dim: number
  readonly table: string
}

export interface Manifest {
  readonly format: number
  readonly name: string
  readonly version: string
  readonly created?: string
  readonly files: Readonly<Record<string, { readonly sha256: string; readonly bytes: number }>>
  readonly encoders: { readonly image: ImageEncoderSpec; readonly text: TextEncoderSpec }
  readonly head: {
    readonly file: string
    readonly sha256: string
    readonly inputs: {
      readonly image: string; readonly image_oov: string
      readonly text: string; readonly text_oov: string
      readonly fields: string
    }
    readonly outputs: { readonly pi: string; readonly mu: string; readonly sigma: string }
  }
  readonly oov: {
    readonly image: { readonly file: string; readonly dim: number }
    readonly text: { readonly file: string; readonly dim: number }
  }
  readonly fields: readonly FieldSpec[]
  readonly hash_test_vectors: ReadonlyArray<{ readonly field: string; readonly value: string; readonly row: number }>
  readonly mdn: {
    readonly k: number
    readonly gauss_hermite: { readonly nodes: readonly number[]; readonly weights: readonly number[] }
    readonly quantiles: Readonly<Record<string, number>>
    /** Quantile root search: bracket of ±span_sigmas around the components, at most `iterations` steps. */
    readonly bisection?: { readonly iterations: number; readonly span_sigmas: number }
  }
  readonly calibration: { readonly x: readonly number[]; readonly y: readonly number[] }
  readonly parity?: { readonly dir: string; readonly items: string; readonly expected: string }
  readonly report?: string
}
