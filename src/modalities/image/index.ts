import { CtrError } from '../../errors.ts'
import {
  createImageFetcher, type FetchMetrics, type ImageFetchOptions, type ImageFetcher,
} from './fetch-image.ts'
import { decodePixels, preprocessImage, type ImageInputSpec, type PreprocessedImage, type PreprocessOptions } from './preprocess.ts'

export { checkAddress, checkResolved, checkUrl, createAllowList, policyForPort } from './address-policy.ts'
export type { AddressPolicy, AllowList, Decision, UrlDecision } from './address-policy.ts'
export { createImageFetcher, fetchImage } from './fetch-image.ts'
export type { FetchFailureReason, FetchMetrics, FetchedImage, ImageFetchOptions, ImageFetcher } from './fetch-image.ts'
export { DEFAULT_LIMIT_INPUT_PIXELS, configureSharp, decodePixels, pixelsSha256, preprocessImage, writeTensor } from './preprocess.ts'
export type { ImageInputSpec, PreprocessOptions, PreprocessedImage } from './preprocess.ts'

export interface LoadImageOptions {
  /** Epoch milliseconds by which the fetch must be over. */
  readonly deadline: number
  readonly spec: ImageInputSpec
  /** Used to build a one-off fetcher when `fetcher` is not given. */
  readonly fetchOptions: ImageFetchOptions
  /** A long-lived fetcher (one connection pool per worker); takes precedence over `fetchOptions`. */
  readonly fetcher?: ImageFetcher
  readonly preprocess?: PreprocessOptions
  readonly metrics?: FetchMetrics
}

/** URL → encoder input. Throws CtrError; `permanent` says whether retrying can help. */
export async function loadImageInput(url: string, opts: LoadImageOptions): Promise<PreprocessedImage> {
  return loadWith(url, opts, (bytes) => preprocessImage(bytes, opts.spec, opts.preprocess))
}

/** URL → decoded pixels (`writeTensor` makes the encoder input of them); as `loadImageInput` otherwise. */
export async function loadImagePixels(url: string, opts: LoadImageOptions): Promise<Uint8Array> {
  return loadWith(url, opts, (bytes) => decodePixels(bytes, opts.spec, opts.preprocess))
}

async function loadWith<T>(url: string, opts: LoadImageOptions, decode: (bytes: Buffer) => Promise<T>): Promise<T> {
  const fetcher = opts.fetcher ?? createImageFetcher(opts.fetchOptions)
  try {
    const { bytes } = await fetcher.fetch(url, { deadline: opts.deadline, metrics: opts.metrics })
    return await decode(bytes)
  } catch (err) {
    if (err instanceof CtrError && err.code === 'CTR_ERR_IMAGE_INVALID') {
      opts.metrics?.fetchFailures.inc({ reason: 'invalid-image' })
    }
    throw err
  } finally {
    if (opts.fetcher === undefined) await fetcher.close()
  }
}
