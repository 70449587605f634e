import { FIRST_QUANTILE, MEAN, RAW_MEAN, STD, type MixtureStats } from '../mdn/batch-stats.ts'
import { RESPONSE_FIELDS, type ResponseField } from './predict-schema.ts'
import type { Source } from './types.ts'

// The /predict response's `predictions` array written straight from the statistics block and the
// head's outputs, without building 100 × 7 objects for a generic serializer to walk (number and
// object serialisation were 7 % of the request thread, the objects' garbage part of GC's 7 %).
// The shape is predict-schema.ts's response schema; test/predict-json.test.ts checks it matches
// JSON.stringify of the object form (distribution.ts) byte for byte.

/** What one scored request carries to the serializer. */
export interface ScoredRows {
  readonly n: number
  /** n × stats.width values (MixtureStats.compute). */
  readonly rows: Float64Array
  readonly pi: Float32Array
  readonly mu: Float32Array
  readonly sigma: Float32Array
}

export interface RowMeta {
  readonly ids: readonly string[]
  readonly image: readonly Source[]
  readonly text: readonly Source[]
  /** Which members to write (fieldMask of options.fields); all when absent. */
  readonly fields?: number
}

/** One bit per RESPONSE_FIELDS entry, in its order. */
const BIT = Object.fromEntries(RESPONSE_FIELDS.map((f, i) => [f, 1 << i])) as Record<ResponseField, number>
export const ALL_FIELDS = (1 << RESPONSE_FIELDS.length) - 1

/** The mask of `options.fields` (every member when absent). */
export function fieldMask(fields: readonly ResponseField[] | undefined): number {
  if (fields === undefined) return ALL_FIELDS
  let mask = 0
  for (const f of fields) mask |= BIT[f]
  return mask
}

/** JSON of a number as JSON.stringify writes it (non-finite values become null). */
function num(x: number): string {
  return Number.isFinite(x) ? `${x}` : 'null'
}

export class PredictionsJson {
  private readonly quantileKeys: readonly string[]

  constructor(private readonly stats: MixtureStats) {
    this.quantileKeys = stats.quantileNames.map((name, j) => `${j === 0 ? '' : ','}${JSON.stringify(name)}:`)
  }

  /** `[{"id":…,"ctr":{…},"sources":{…}}, …]` for rows [0, n), with the members in `meta.fields`. */
  write(s: ScoredRows, meta: RowMeta): string {
    const mask = meta.fields ?? ALL_FIELDS
    if (mask === ALL_FIELDS) return this.writeAll(s, meta)
    let out = '['
    for (let i = 0; i < s.n; i++) {
      out += `${i === 0 ? '' : ','}{"id":${JSON.stringify(meta.ids[i])},"ctr":{`
      let sep = ''
      for (const f of RESPONSE_FIELDS) {
        if ((mask & BIT[f]) === 0 || f === 'sources') continue
        out += `${sep}"${f}":${this.member(s, i, f)}`
        sep = ','
      }
      out += '}'
      if (mask & BIT.sources) out += `,"sources":{"image":"${meta.image[i] as Source}","text":"${meta.text[i] as Source}"}`
      out += '}'
    }
    return `${out}]`
  }

  /** One member of row i's `ctr` (trimmed responses; writeAll is the default's unrolled form). */
  private member(s: ScoredRows, i: number, f: Exclude<ResponseField, 'sources'>): string {
    const o = i * this.stats.width
    if (f === 'mean') return num(s.rows[o + MEAN] as number)
    if (f === 'raw_mean') return num(s.rows[o + RAW_MEAN] as number)
    if (f === 'std') return num(s.rows[o + STD] as number)
    if (f === 'quantiles') {
      let out = '{'
      for (let j = 0; j < this.quantileKeys.length; j++) out += `${this.quantileKeys[j] as string}${num(s.rows[o + FIRST_QUANTILE + j] as number)}`
      return `${out}}`
    }
    const k = this.stats.k
    let out = '['
    for (let c = i * k; c < (i + 1) * k; c++) {
      out += `${c === i * k ? '' : ','}{"weight":${num(s.pi[c] as number)},"mu":${num(s.mu[c] as number)},"sigma":${num(s.sigma[c] as number)}}`
    }
    return `${out}]`
  }

  private writeAll(s: ScoredRows, meta: RowMeta): string {
    const { rows, pi, mu, sigma } = s
    const w = this.stats.width
    const k = this.stats.k
    const nq = this.quantileKeys.length
    let out = '['
    for (let i = 0; i < s.n; i++) {
      const o = i * w
      out += `${i === 0 ? '' : ','}{"id":${JSON.stringify(meta.ids[i])},"ctr":{"mean":${num(rows[o + MEAN] as number)},"raw_mean":${num(rows[o + RAW_MEAN] as number)},"std":${num(rows[o + STD] as number)},"quantiles":{`
      for (let j = 0; j < nq; j++) out += `${this.quantileKeys[j] as string}${num(rows[o + FIRST_QUANTILE + j] as number)}`
      out += '},"components":['
      for (let c = i * k; c < (i + 1) * k; c++) {
        out += `${c === i * k ? '' : ','}{"weight":${num(pi[c] as number)},"mu":${num(mu[c] as number)},"sigma":${num(sigma[c] as number)}}`
      }
      out += `]},"sources":{"image":"${meta.image[i] as Source}","text":"${meta.text[i] as Source}"}}`
    }
    return `${out}]`
  }
}
