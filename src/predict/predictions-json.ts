import { FIRST_QUANTILE, MEAN, RAW_MEAN, STD, type MixtureStats } from '../mdn/batch-stats.ts'
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

  /** `[{"id":…,"ctr":{…},"sources":{…}}, …]` for rows [0, n). */
  write(s: ScoredRows, meta: RowMeta): string {
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
