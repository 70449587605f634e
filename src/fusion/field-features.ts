import type { Bundle, LoadedField } from '../bundle/load-bundle.ts'
import type { CategoricalField } from '../bundle/manifest.ts'
import { CtrError } from '../errors.ts'
import { categoricalRow } from '../modalities/categorical.ts'
import { numericRow } from '../modalities/numeric.ts'
import type { FieldValues } from '../predict/types.ts'

const ROW_CACHE_LIMIT = 100_000

/**
 * Turns categorical and numeric fields into the head's fields_emb row: one table row per value,
 * the mean of rows for multi-valued fields, row 0 when the field is missing.
 */
export class FieldFeatures {
  // Hashing dominates field cost on big requests; values repeat across requests. One map per field.
  private readonly rowCache = new Map<string, Map<string, number>>()

  constructor(private readonly bundle: Bundle) {
    for (const f of bundle.fields) this.rowCache.set(f.spec.name, new Map())
  }

  private hashRow(spec: CategoricalField, value: string): number {
    const cache = this.rowCache.get(spec.name) as Map<string, number>
    let row = cache.get(value)
    if (row === undefined) {
      row = categoricalRow(spec, value)
      if (cache.size >= ROW_CACHE_LIMIT) cache.clear()
      cache.set(value, row)
    }
    return row
  }

  /**
   * Rows for one field value; throws a 400 naming the field when the value has the wrong type.
   * `path` is a function: building a JSON path per field per item only matters when it is wrong.
   */
  private rows(f: LoadedField, value: unknown, path: () => string): number[] {
    if (value === undefined || value === null) return [0]
    const spec = f.spec
    if (spec.type === 'numeric') {
      if (typeof value !== 'number' || !Number.isFinite(value)) throw new CtrError('BAD_FIELD', [path(), 'must be a finite number'])
      return [numericRow(spec, value)]
    }
    if (typeof value === 'string') return [this.hashRow(spec, value)]
    if (Array.isArray(value)) {
      if (!spec.multi) throw new CtrError('BAD_FIELD', [path(), 'takes one string, not an array'])
      if (value.length === 0) return [0]
      return value.map((v, i) => {
        if (typeof v !== 'string') throw new CtrError('BAD_FIELD', [`${path()}/${i}`, 'must be a string'])
        return this.hashRow(spec, v)
      })
    }
    throw new CtrError('BAD_FIELD', [path(), spec.multi ? 'must be a string or an array of strings' : 'must be a string'])
  }

  private write(out: Float32Array, base: number, f: LoadedField, rows: number[]): void {
    const dim = f.spec.dim
    const o = base + f.offset
    if (rows.length === 1) {
      const r = (rows[0] as number) * dim
      out.set(f.table.subarray(r, r + dim), o)
      return
    }
    const inv = 1 / rows.length
    for (let j = 0; j < dim; j++) {
      let s = 0
      for (const row of rows) s += f.table[row * dim + j] as number
      out[o + j] = s * inv
    }
  }

  /** Fill the given scope's fields of one fields_emb row at `base`; unknown names go to `unknown`. */
  fill(out: Float32Array, base: number, scope: 'context' | 'item', values: FieldValues | undefined, path: string, unknown: Set<string>): void {
    const fields = this.bundle.fieldsByScope[scope]
    const cat = values?.categorical ?? {}
    const num = values?.numeric ?? {}
    for (const f of fields.values()) {
      const group = f.spec.type === 'numeric' ? num : cat
      const value: unknown = Object.hasOwn(group, f.spec.name) ? (group as Record<string, unknown>)[f.spec.name] : undefined
      this.write(out, base, f, this.rows(f, value, () => `${path}/${f.spec.type}/${f.spec.name}`))
    }
    for (const [kind, group] of [['categorical', cat], ['numeric', num]] as const) {
      for (const name of Object.keys(group)) {
        const f = fields.get(name)
        if (!f || f.spec.type !== kind) unknown.add(`${path.replace(/\/\d+$/, '/*')}/${kind}/${name}: not a field of this model, ignored`)
      }
    }
  }
}
