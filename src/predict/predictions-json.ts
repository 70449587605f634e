import type { MixtureStats } from '../mdn/batch-stats.ts'
import { RESPONSE_FIELDS, type ResponseField } from './predict-schema.ts'
import { type Source, SOURCES } from './types.ts'
import { JsonBytes, literal } from '../util/json-bytes.ts'

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

/** Pre-encoded punctuation and keys of one prediction. */
const LIT = {
  id: literal('{"id":'),
  ctr: literal(',"ctr":{'),
  ctrEnd: literal('}'),
  member: Object.fromEntries(RESPONSE_FIELDS.map((f) => [f, [literal(`"${f}":`), literal(`,"${f}":`)]])) as Record<ResponseField, [Uint8Array, Uint8Array]>,
  weight: [literal('{"weight":'), literal(',{"weight":')],
  mu: literal(',"mu":'),
  sigma: literal(',"sigma":'),
  sources: literal(',"sources":{"image":'),
  text: literal(',"text":'),
  end: literal('}}'),
}

/** The JSON strings of the sources, encoded once. */
const SOURCE_BYTES = new Map<Source, Uint8Array>(SOURCES.map((s) => [s, literal(JSON.stringify(s))]))

// Bytes of one prediction besides its id and numbers (keys, punctuation, sources), with room to spare.
const FIXED_BYTES = 512
const NUMBER_BYTES = 25

export class PredictionsJson {
  /** Per quantile: its key with and without a leading comma. */
  private readonly quantileKeys: ReadonlyArray<readonly [Uint8Array, Uint8Array]>
  private readonly out = new JsonBytes()
  /** The statistics block as a plain array, for one JSON.stringify over it (JsonBytes.numbers). */
  private readonly values: number[] = []

  constructor(private readonly stats: MixtureStats) {
    this.quantileKeys = stats.quantileNames.map((name) => [literal(`{${JSON.stringify(name)}:`), literal(`,${JSON.stringify(name)}:`)] as const)
  }

  /**
   * `[{"id":…,"ctr":{…},"sources":{…}}, …]` for rows [0, n), with the members in `meta.fields`, as
   * UTF-8 bytes: the same bytes as JSON.stringify of the object form (distribution.ts; test
   * test/predict-json.test.ts), written straight from the typed arrays. The components are float32
   * outputs of the head, written as the shortest decimal that reads back as the same float32.
   */
  write(s: ScoredRows, meta: RowMeta): Uint8Array {
    const mask = meta.fields ?? ALL_FIELDS
    const o = this.out
    const { rows, pi, mu, sigma } = s
    const w = this.stats.width
    const k = this.stats.k
    const perRow = FIXED_BYTES + NUMBER_BYTES * (w + 3 * k)
    const values = this.values
    values.length = s.n * w
    for (let j = 0; j < values.length; j++) values[j] = rows[j] as number
    o.reset()
    o.numbers(values)
    // Each member's key for this request (with a comma unless it is the first written), or
    // undefined when trimmed away: the rows below then only write or pass over.
    const keys: Array<Uint8Array | undefined> = []
    let first = 1
    for (const name of CTR_MEMBERS) {
      if ((mask & BIT[name]) === 0) {
        keys.push(undefined)
        continue
      }
      keys.push(LIT.member[name][1 - first])
      first = 0
    }
    const [meanKey, rawMeanKey, stdKey, quantilesKey, componentsKey] = keys
    const sources = (mask & BIT.sources) !== 0
    const q = this.quantileKeys.length
    o.byte(0x5b)
    for (let i = 0; i < s.n; i++) {
      const id = meta.ids[i] as string
      o.reserve(perRow + 6 * id.length)
      if (i > 0) o.byte(0x2c)
      o.raw(LIT.id)
      o.string(id)
      o.raw(LIT.ctr)
      // The statistics' numbers come in column order (mean, raw_mean, std, quantiles), which is
      // the members' order: each is written or passed over.
      this.statistic(meanKey)
      this.statistic(rawMeanKey)
      this.statistic(stdKey)
      if (quantilesKey) {
        o.raw(quantilesKey)
        for (let j = 0; j < q; j++) {
          o.raw((this.quantileKeys[j] as readonly [Uint8Array, Uint8Array])[j === 0 ? 0 : 1])
          o.nextNumber()
        }
        o.byte(0x7d)
      } else {
        for (let j = 0; j < q; j++) o.skipNumber()
      }
      if (componentsKey) {
        o.raw(componentsKey)
        o.byte(0x5b)
        for (let c = i * k; c < (i + 1) * k; c++) {
          o.raw(LIT.weight[c === i * k ? 0 : 1] as Uint8Array)
          o.float32(pi[c] as number)
          o.raw(LIT.mu)
          o.float32(mu[c] as number)
          o.raw(LIT.sigma)
          o.float32(sigma[c] as number)
          o.byte(0x7d)
        }
        o.byte(0x5d)
      }
      o.raw(LIT.ctrEnd)
      if (sources) {
        o.raw(LIT.sources)
        o.raw(SOURCE_BYTES.get(meta.image[i] as Source) as Uint8Array)
        o.raw(LIT.text)
        o.raw(SOURCE_BYTES.get(meta.text[i] as Source) as Uint8Array)
        o.raw(LIT.end)
      } else {
        o.byte(0x7d)
      }
    }
    o.byte(0x5d)
    return o.take()
  }

  /** A single-number member (the next statistic) under its key, or passed over when trimmed. */
  private statistic(key: Uint8Array | undefined): void {
    if (key) {
      this.out.raw(key)
      this.out.nextNumber()
    } else {
      this.out.skipNumber()
    }
  }
}

type CtrMember = Exclude<ResponseField, 'sources'>
const CTR_MEMBERS = RESPONSE_FIELDS.filter((f): f is CtrMember => f !== 'sources')
// The members' order (mean, raw_mean, std, quantiles) is the statistics block's column order, which
// write() relies on; test/predict-json.test.ts compares every trimmed form with the full one.
