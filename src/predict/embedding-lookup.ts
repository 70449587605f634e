import type { Modality } from '../embedding/embedding-service.ts'
import type { Source } from './types.ts'

/** What the request path needs from the tiered cache. */
export interface EmbeddingLookup {
  lookup(keys: string[], deadline: number): Promise<Array<{ vector: Float32Array; tier: 'l1' | 'l2' } | undefined>>
}

export interface ModalityInputs {
  readonly modality: Modality
  /** Per item: the cache key, or undefined when the item has no input for this modality. */
  readonly keys: ReadonlyArray<string | undefined>
  readonly inputs: ReadonlyArray<string | undefined>
}

export interface ResolvedModality {
  readonly vectors: Array<Float32Array | undefined>
  readonly sources: Source[]
}

/** Distinct keys of both modalities, so one lookup (one Redis round trip) serves the request. */
export function distinctKeys(mods: readonly ModalityInputs[]): string[] {
  const seen = new Set<string>()
  for (const m of mods) for (const k of m.keys) if (k !== undefined) seen.add(k)
  return [...seen]
}

export function resolveFromLookup(
  m: ModalityInputs,
  found: ReadonlyMap<string, { vector: Float32Array; tier: 'l1' | 'l2' }>,
): ResolvedModality {
  const vectors: Array<Float32Array | undefined> = []
  const sources: Source[] = []
  for (const k of m.keys) {
    if (k === undefined) { vectors.push(undefined); sources.push('absent'); continue }
    const hit = found.get(k)
    vectors.push(hit?.vector)
    sources.push(hit ? hit.tier : 'oov')
  }
  return { vectors, sources }
}
