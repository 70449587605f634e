import type { FieldSpec, Manifest } from '../bundle/manifest.ts'

// JSON schemas of POST /predict, generated from the manifest and limits (never hand-copied): the
// fields a bundle declares get their own type (string, string or array, number); other names are
// accepted with a generic type and reported in `warnings` as unknown.

export interface SchemaLimits {
  readonly maxItems: number
  /** MAX_BUDGET_MS: the document must not promise budgets the server refuses (60 s when absent). */
  readonly maxBudgetMs?: number
}

const MAX_STRING = 256
const MAX_FIELDS = 64

const oneString = { type: 'string', maxLength: MAX_STRING }
const manyStrings = { type: 'array', maxItems: MAX_FIELDS, items: oneString }
const anyCategorical = { anyOf: [oneString, manyStrings] }
const aNumber = { type: 'number' }

// Field names: 0–64 characters, as a pattern rather than `propertyNames: {maxLength}` because
// schema-driven generators (Schemathesis's fuzzing phase) ignore propertyNames and then report
// our refusals as bugs. `[\s\S]` also matches line breaks; both Ajv (u flag) and Python count code points.
const FIELD_NAME = '^[\\s\\S]{0,64}$'

function fieldSchema(f: FieldSpec): object {
  if (f.type === 'numeric') return aNumber
  return f.multi ? anyCategorical : oneString
}

function fieldGroup(fields: readonly FieldSpec[], kind: FieldSpec['type']): object {
  const known = fields.filter((f) => f.type === kind)
  return {
    type: 'object',
    maxProperties: MAX_FIELDS,
    properties: Object.fromEntries(known.map((f) => [f.name, fieldSchema(f)])),
    patternProperties: { [FIELD_NAME]: kind === 'numeric' ? aNumber : anyCategorical },
    additionalProperties: false,
  }
}

function fieldValues(fields: readonly FieldSpec[], scope: FieldSpec['scope']): { categorical: object; numeric: object } {
  const inScope = fields.filter((f) => f.scope === scope)
  return { categorical: fieldGroup(inScope, 'categorical'), numeric: fieldGroup(inScope, 'numeric') }
}

const itemProperties = (fields: readonly FieldSpec[]) => ({
  id: { type: 'string', minLength: 1, maxLength: MAX_STRING },
  image_url: { type: 'string', maxLength: 2048, pattern: '^$|^[hH][tT][tT][pP][sS]?://' },
  title: { type: 'string', maxLength: 1024 },
  ...fieldValues(fields, 'item'),
})

/** Members of a prediction's `ctr`, in the order they are written. */
export const CTR_FIELDS = ['mean', 'raw_mean', 'std', 'quantiles', 'components'] as const

/** What `options.fields` may name (`id` is always sent): the members of `ctr`, and `sources`. */
export const RESPONSE_FIELDS = [...CTR_FIELDS, 'sources'] as const
export type ResponseField = (typeof RESPONSE_FIELDS)[number]

/** Keys an item may carry; any other key is ignored and reported in `warnings`. */
export const ITEM_KEYS: ReadonlySet<string> = new Set(Object.keys(itemProperties([])))

export function predictBodySchema(limits: SchemaLimits, manifest: Pick<Manifest, 'fields'>): object {
  return {
    type: 'object',
    required: ['items'],
    additionalProperties: false,
    properties: {
      context: { type: 'object', additionalProperties: false, properties: fieldValues(manifest.fields, 'context') },
      items: {
        type: 'array',
        minItems: 1,
        maxItems: limits.maxItems,
        items: { type: 'object', required: ['id'], properties: itemProperties(manifest.fields) },
      },
      options: {
        type: 'object',
        additionalProperties: false,
        properties: {
          budget_ms: { type: 'number', minimum: 10, maximum: limits.maxBudgetMs ?? 60_000 },
          miss_policy: { type: 'string', enum: ['oov', 'budget'] },
          // Response trimming: only these members of each prediction (default: all of them).
          fields: { type: 'array', uniqueItems: true, maxItems: RESPONSE_FIELDS.length, items: { type: 'string', enum: RESPONSE_FIELDS } },
        },
      },
    },
  }
}

const source = { type: 'string', enum: ['l1', 'l2', 'computed', 'oov', 'absent'] }

export function predictResponseSchema(manifest: Manifest): object {
  const quantiles = Object.fromEntries(Object.keys(manifest.mdn.quantiles).map((q) => [q, { type: 'number' }]))
  const ctr: Record<(typeof CTR_FIELDS)[number], object> = {
    mean: { type: 'number' }, raw_mean: { type: 'number' }, std: { type: 'number' },
    quantiles: { type: 'object', properties: quantiles },
    components: {
      type: 'array',
      items: { type: 'object', properties: { weight: { type: 'number' }, mu: { type: 'number' }, sigma: { type: 'number' } } },
    },
  }
  return {
    type: 'object',
    properties: {
      model: { type: 'object', properties: { name: { type: 'string' }, version: { type: 'string' } } },
      predictions: {
        type: 'array',
        items: {
          type: 'object',
          // Members left out by options.fields are absent.
          properties: {
            id: { type: 'string' },
            ctr: { type: 'object', properties: ctr },
            sources: { type: 'object', properties: { image: source, text: source } },
          },
        },
      },
      warnings: { type: 'array', items: { type: 'string' } },
      timing_ms: { type: 'object', additionalProperties: { type: 'number' } },
    },
  }
}
