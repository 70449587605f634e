import type { Modality } from '../embedding/embedding-service.ts'
import type { Source } from './types.ts'

/** What the request path needs from the tiered cache. */
export interface EmbeddingLookup {
  /** `count: false`: not counted in the lookup metrics (the start-up warm-up's requests). */
  lookup(keys: string[], deadline: number, opts?: { count?: boolean }): Promise<Array<{ vector: Float32Array; tier: 'l1' | 'l2' } | undefined>>
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

/** Vectors and sources of one modality from a lookup of distinct keys; `at[i]` is item i's key index (−1: absent). */
export function resolveHits(at: Int32Array, hits: ReadonlyArray<{ vector: Float32Array; tier: 'l1' | 'l2' } | undefined>): ResolvedModality {
  const vectors: Array<Float32Array | undefined> = []
  const sources: Source[] = []
  for (let i = 0; i < at.length; i++) {
    const j = at[i] as number
    const hit = j < 0 ? undefined : hits[j]
    vectors.push(hit?.vector)
    sources.push(j < 0 ? 'absent' : hit ? hit.tier : 'oov')
  }
  return { vectors, sources }
}
