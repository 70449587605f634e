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
  private readonly pool: ReusedPrediction[] = []
  private view: ReusedPrediction[] = []

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

  /**
   * The default (every member) response: the values are written into prediction objects kept from
   * request to request, and one JSON.stringify writes them all. V8's serializer formats numbers
   * straight into its output buffer, where a template literal makes a string per number and a rope
   * of them: 0.31 against 0.40 ms per 100 items (UTF-8 included), and no per-request garbage.
   */
  private writeAll(s: ScoredRows, meta: RowMeta): string {
    const { rows, pi, mu, sigma } = s
    const w = this.stats.width
    const k = this.stats.k
    const names = this.stats.quantileNames
    const out = this.reused(s.n)
    for (let i = 0; i < s.n; i++) {
      const p = out[i] as ReusedPrediction
      const o = i * w
      p.id = meta.ids[i] as string
      const ctr = p.ctr
      ctr.mean = rows[o + MEAN] as number
      ctr.raw_mean = rows[o + RAW_MEAN] as number
      ctr.std = rows[o + STD] as number
      for (let j = 0; j < names.length; j++) ctr.quantiles[names[j] as string] = rows[o + FIRST_QUANTILE + j] as number
      for (let c = 0; c < k; c++) {
        const comp = ctr.components[c] as { weight: number; mu: number; sigma: number }
        comp.weight = pi[i * k + c] as number
        comp.mu = mu[i * k + c] as number
        comp.sigma = sigma[i * k + c] as number
      }
      p.sources.image = meta.image[i] as Source
      p.sources.text = meta.text[i] as Source
    }
    return JSON.stringify(out)
  }

  /** n prediction objects of this head's shape (grown as needed, reused by the next request). */
  private reused(n: number): ReusedPrediction[] {
    while (this.pool.length < n) {
      const quantiles: Record<string, number> = {}
      for (const name of this.stats.quantileNames) quantiles[name] = 0
      this.pool.push({
        id: '',
        ctr: { mean: 0, raw_mean: 0, std: 0, quantiles, components: Array.from({ length: this.stats.k }, () => ({ weight: 0, mu: 0, sigma: 0 })) },
        sources: { image: 'oov', text: 'oov' },
      })
    }
    if (this.view.length !== n) this.view = this.pool.slice(0, n)
    return this.view
  }
}

/** A prediction in the response's member order (predict-schema.ts), written in place. */
interface ReusedPrediction {
  id: string
  ctr: {
    mean: number
    raw_mean: number
    std: number
    quantiles: Record<string, number>
    components: Array<{ weight: number; mu: number; sigma: number }>
  }
  sources: { image: Source; text: Source }
}
