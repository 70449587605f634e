import type { ImageInputSpec } from '../bundle/manifest.ts'
import type { ImageFetchOptions } from '../modalities/image/fetch-image.ts'

// Messages between the main thread and an encoder worker thread.

export interface EncoderWorkerData {
  readonly kind: 'image' | 'text'
  readonly modelPath: string
  readonly intraOpThreads: number
  /** Niceness of the worker thread (0 = unchanged); see encoder-worker.ts. */
  readonly nice?: number
  readonly inputName: string
  readonly outputName: string
  readonly dim: number
  /** Image: [channels, height, width] of one input. */
  readonly imageShape?: readonly [number, number, number]
  /** Text: tokenizer folder, max tokens, pad id, attention-mask input name. */
  readonly tokenizerDir?: string
  readonly maxLength?: number
  readonly padId?: number
  readonly maskName?: string
  /** Image: how the worker fetches and preprocesses URLs itself (off the request thread). */
  readonly imageLoading?: {
    readonly spec: ImageInputSpec
    readonly fetch: Omit<ImageFetchOptions, 'resolve'>
    readonly limitInputPixels: number
    readonly hostConcurrency: number
  }
}

export type EncoderRequest =
  | { readonly id: number; readonly kind: 'image'; readonly n: number; readonly tensor: Float32Array }
  | { readonly id: number; readonly kind: 'image-urls'; readonly urls: readonly string[]; readonly deadline: number }
  | { readonly id: number; readonly kind: 'text'; readonly titles: readonly string[] }

/** Main thread → worker: finish the runs in progress, release the session, exit with code 0. */
export interface EncoderControl { readonly kind: 'close' }

export type EncoderResponse =
  | {
    readonly id: number; readonly ok: true; readonly embeddings: Float32Array; readonly inputIds?: number[][]
    /** image-urls: which URLs the embeddings are for (in order), why the others failed, fetch failure reasons. */
    readonly embedded?: number[]
    readonly failures?: Array<{ readonly index: number; readonly message: string; readonly permanent: boolean; readonly reason?: string }>
    readonly fetchReasons?: string[]
  }
  | { readonly id: number; readonly ok: false; readonly error: string }
