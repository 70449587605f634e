import type { Bundle, LoadedField } from '../bundle/load-bundle.ts'
import type { CategoricalField } from '../bundle/manifest.ts'
import { CtrError } from '../errors.ts'
import { categoricalRow } from '../modalities/categorical.ts'
import { numericRow } from '../modalities/numeric.ts'
import { RowCache } from './row-cache.ts'
import type { FieldValues } from '../predict/types.ts'

/**
 * Turns categorical and numeric fields into the head's fields_emb row: one table row per value,
 * the mean of rows for multi-valued fields, row 0 when the field is missing.
 */
export class FieldFeatures {
  // Hashing dominates field cost on big requests; values repeat across requests (row-cache.ts).
  // The manifest's fields of each scope as arrays: iterated once per item, without a Map iterator.
  private readonly inScope: { readonly context: readonly LoadedField[]; readonly item: readonly LoadedField[] }

  constructor(private readonly bundle: Bundle, private readonly rowCache = new RowCache({ maxBytes: 32 * 1024 * 1024 })) {
    this.inScope = { context: [...bundle.fieldsByScope.context.values()], item: [...bundle.fieldsByScope.item.values()] }
  }

  private hashRow(spec: CategoricalField, value: string): number {
    return this.rowCache.get(spec.name, value, () => categoricalRow(spec, value))
  }

  /**
   * Writes one field's slice for `value`; throws a 400 naming the field when the value has the wrong
   * type. The JSON path is built only then (`path` + field), and single values are copied without
   * allocating: this runs once per field per item (issue 11: field assembly was 7 % of the request thread).
   */
  private put(out: Float32Array, base: number, f: LoadedField, value: unknown, path: string, index?: number): void {
    if (value === undefined || value === null) { this.copyRow(out, base, f, 0); return }
    const spec = f.spec
    if (spec.type === 'numeric') {
      if (typeof value !== 'number' || !Number.isFinite(value)) throw badField(pathAt(path, index), f, '', 'must be a finite number')
      this.copyRow(out, base, f, numericRow(spec, value))
      return
    }
    if (typeof value === 'string') { this.copyRow(out, base, f, this.hashRow(spec, value)); return }
    if (Array.isArray(value)) {
      if (!spec.multi) throw badField(pathAt(path, index), f, '', 'takes one string, not an array')
      if (value.length === 0) { this.copyRow(out, base, f, 0); return }
      const rows = value.map((v: unknown, i) => {
        if (typeof v !== 'string') throw badField(pathAt(path, index), f, `/${i}`, 'must be a string')
        return this.hashRow(spec, v)
      })
      this.meanRows(out, base, f, rows)
      return
    }
    throw badField(pathAt(path, index), f, '', spec.multi ? 'must be a string or an array of strings' : 'must be a string')
  }

  private copyRow(out: Float32Array, base: number, f: LoadedField, row: number): void {
    const dim = f.spec.dim
    const o = base + f.offset
    const r = row * dim
    const t = f.table
    for (let j = 0; j < dim; j++) out[o + j] = t[r + j] as number
  }

  private meanRows(out: Float32Array, base: number, f: LoadedField, rows: number[]): void {
    const dim = f.spec.dim
    const o = base + f.offset
    const inv = 1 / rows.length
    const t = f.table
    // Summed in row order per element, as before (float32 sums: the order is part of parity).
    for (let j = 0; j < dim; j++) {
      let s = 0
      for (let r = 0; r < rows.length; r++) s += t[(rows[r] as number) * dim + j] as number
      out[o + j] = s * inv
    }
  }

  /**
   * Fill the given scope's fields of one fields_emb row at `base`; unknown names go to `unknown`.
   * `path` names the values in errors; with `index` it is `${path}/${index}` (the string is then
   * built only for an error, not once per item).
   */
  fill(out: Float32Array, base: number, scope: 'context' | 'item', values: FieldValues | undefined, path: string, unknown: Set<string>, index?: number): void {
    const fields = this.bundle.fieldsByScope[scope]
    const cat: Record<string, unknown> = values?.categorical ?? NONE
    const num: Record<string, unknown> = values?.numeric ?? NONE
    for (const f of this.inScope[scope]) {
      const group = f.spec.type === 'numeric' ? num : cat
      this.put(out, base, f, Object.hasOwn(group, f.spec.name) ? group[f.spec.name] : undefined, path, index)
    }
    for (const name in cat) this.checkKnown(fields, 'categorical', name, path, unknown, index)
    for (const name in num) this.checkKnown(fields, 'numeric', name, path, unknown, index)
  }

  private checkKnown(fields: ReadonlyMap<string, LoadedField>, kind: 'categorical' | 'numeric', name: string, path: string, unknown: Set<string>, index?: number): void {
    const f = fields.get(name)
    if (f && f.spec.type === kind) return
    const where = index === undefined ? path.replace(/\/\d+$/, '/*') : `${path}/*`
    unknown.add(`${where}/${kind}/${name}: not a field of this model, ignored`)
  }
}

const NONE: Record<string, unknown> = Object.freeze({})

function pathAt(path: string, index: number | undefined): string {
  return index === undefined ? path : `${path}/${index}`
}

function badField(path: string, f: LoadedField, suffix: string, reason: string): CtrError {
  return new CtrError('BAD_FIELD', [`${path}/${f.spec.type}/${f.spec.name}${suffix}`, reason])
}
