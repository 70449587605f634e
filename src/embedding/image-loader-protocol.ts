import type { EncoderWorkerData } from './encoder-protocol.ts'

// Messages between an image-encoder worker and its loader thread (image-loader-worker.ts).

export type ImageLoading = NonNullable<EncoderWorkerData['imageLoading']>

export interface LoaderRequest { readonly id: number; readonly urls: readonly string[]; readonly deadline: number }

export interface LoaderReply {
  readonly id: number
  /** NCHW float32 tensors of the URLs listed in `embedded`, concatenated in that order (transferred). */
  readonly batch: Float32Array
  readonly embedded: number[]
  readonly failures: Array<{ readonly index: number; readonly message: string; readonly permanent: boolean; readonly reason?: string }>
  /** Reasons of failed fetches, for the fetch-failure metric. */
  readonly fetchReasons: string[]
}
