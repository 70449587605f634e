import { readJsonl } from './jsonl.ts'
import { join } from 'node:path'
import type { FieldValues, PredictItem } from '../src/predict/types.ts'
import { SAMPLE_DIR } from './bundle.ts'


/** The committed sample of the synthetic generator; image_url is rewritten to the test origin. */
export function sampleItems(baseUrl: string, count?: number): PredictItem[] {
  const items = readJsonl<PredictItem>(join(SAMPLE_DIR, 'items.jsonl'))
  return items.slice(0, count ?? items.length).map((it) => ({ ...it, image_url: `${baseUrl}/${it.image_url ?? ''}` }))
}

export function sampleContexts(count?: number): FieldValues[] {
  const ctx = readJsonl<FieldValues>(join(SAMPLE_DIR, 'contexts.jsonl'))
  return ctx.slice(0, count ?? ctx.length)
}
