import { hash } from 'node:crypto'

// Cache keys: `<prefix>:<modality>:<encoder-version>:<digest>` (DESIGN.md, request path step 2).
// The encoder version is part of the key so a new encoder never reads vectors of an old one.

import type { Modality } from '../modalities/modality.ts'

export { MODALITIES, type Modality } from '../modalities/modality.ts'

/** Hex characters of the sha256 kept in a key: 128 bits, collisions are not a practical concern. */
const DIGEST_CHARS = 32

export function inputDigest(input: string): string {
  // One-shot hash: about half the cost of createHash() for short inputs (runs up to 1000× per request).
  return hash('sha256', input, 'hex').slice(0, DIGEST_CHARS)
}

/** Key of an encoder output for one raw input (image URL, title). */
export function embeddingKey(prefix: string, modality: Modality, encoderVersion: string, input: string): string {
  if (encoderVersion.length === 0 || encoderVersion.includes(':')) {
    // The version is read back from the key (parseModality counts colons from the end).
    throw new TypeError(`encoder version must be non-empty and contain no ':' (got ${JSON.stringify(encoderVersion)})`)
  }
  return `${prefix}:${modality}:${encoderVersion}:${inputDigest(input)}`
}

/**
 * The modality segment of a key, or undefined when the key is not an embedding key.
 * Read from the end so that prefixes may themselves contain ':'.
 */
export function parseModality(key: string): Modality | undefined {
  const digestSep = key.lastIndexOf(':')
  if (digestSep <= 0) return undefined
  const versionSep = key.lastIndexOf(':', digestSep - 1)
  if (versionSep <= 0) return undefined
  const modalitySep = key.lastIndexOf(':', versionSep - 1)
  const modality = key.slice(modalitySep + 1, versionSep)
  return modality === 'image' || modality === 'text' ? modality : undefined
}
