// The /predict body and response (DESIGN.md "HTTP API (v1)").
import type { ResponseField } from './predict-schema.ts'

export type CategoricalValue = string | string[]

export interface FieldValues {
  categorical?: Record<string, CategoricalValue>
  numeric?: Record<string, number>
}

export interface PredictItem extends FieldValues {
  id: string
  image_url?: string
  title?: string
}

export type MissPolicy = 'oov' | 'budget'

export interface PredictBody {
  context?: FieldValues
  items: PredictItem[]
  options?: { budget_ms?: number; miss_policy?: MissPolicy; fields?: ResponseField[] }
}

export const SOURCES = ['l1', 'l2', 'computed', 'oov', 'absent'] as const
export type Source = (typeof SOURCES)[number]

export interface CtrDistribution {
  mean: number
  raw_mean: number
  std: number
  quantiles: Record<string, number>
  components: Array<{ weight: number; mu: number; sigma: number }>
}

export interface Prediction {
  id: string
  ctr: CtrDistribution
  sources: { image: Source; text: Source }
}
