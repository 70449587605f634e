import type { Modality } from '../modalities/modality.ts'

// Popular items come back request after request with the same URL and title: remembering their keys
// turns a sha256 per input (3.7 % of the request thread at 200 req/s) into a map lookup. Bounded;
// cleared when full (a recency order would cost more than the hashes it saves).
const LIMIT = 200_000

export function memoizeKeys(keyOf: (modality: Modality, input: string) => string, limit = LIMIT): (modality: Modality, input: string) => string {
  const memo = { image: new Map<string, string>(), text: new Map<string, string>() }
  return (modality, input) => {
    const m = memo[modality]
    let key = m.get(input)
    if (key === undefined) {
      key = keyOf(modality, input)
      if (m.size >= limit) m.clear()
      m.set(input, key)
    }
    return key
  }
}
