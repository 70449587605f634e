import { basename, join } from 'node:path'
import { readJsonl } from '../../support/jsonl.ts'
import type { FieldValues, PredictBody, PredictItem } from '../../src/predict/types.ts'

// The committed sample of the synthetic generator (docs/bundle-format.md, "sample/").

export const DEFAULT_SAMPLE_DIR = 'fixtures/sample'

export interface Sample {
  readonly dir: string
  /** Items in /predict shape; image_url is the relative `images/<id>.jpg`. */
  readonly items: readonly PredictItem[]
  readonly contexts: readonly FieldValues[]
}

export function loadSample(dir = DEFAULT_SAMPLE_DIR): Sample {
  const items = readJsonl<PredictItem>(join(dir, 'items.jsonl'))
  const contexts = readJsonl<FieldValues>(join(dir, 'contexts.jsonl'))
  if (items.length === 0 || contexts.length === 0) throw new Error(`${dir}: empty sample (items ${items.length}, contexts ${contexts.length})`)
  return { dir, items, contexts }
}

export function imageFile(item: PredictItem): string {
  return basename(item.image_url ?? `${item.id}.jpg`)
}

const VARIANT_WORDS = ['today', 'update', 'explained', 'review', 'guide', 'new', 'now', 'live', 'photos', 'latest', 'deal', 'video']

/**
 * Item `n` of the URL space: n = 0 is the sample item itself; n > 0 is a never-seen copy with a
 * new image URL (same JPEG, so a real embedding of it exists) and a new title variant.
 */
export function itemVariant(item: PredictItem, n: number, originBase: string): PredictItem {
  const url = `${originBase}/img/${n}/${imageFile(item)}`
  if (n === 0) return { ...item, image_url: url }
  const words = (item.title ?? '').split(' ')
  if (words.length > 2) {
    // Swap two words and add a tag word: a plausible re-titling that changes the text cache key.
    const i = n % (words.length - 1)
    const a = words[i] as string
    words[i] = words[i + 1] as string
    words[i + 1] = a
  }
  const title = `${words.join(' ')} ${VARIANT_WORDS[n % VARIANT_WORDS.length]} ${n}`
  return { ...item, id: `${item.id}-v${n}`, image_url: url, title }
}

export type { FieldValues, PredictBody, PredictItem }
