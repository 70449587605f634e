import type { FieldSpec, Manifest } from '../bundle/manifest.ts'

// JSON schemas of POST /predict, generated from the manifest and limits (never hand-copied): the
// fields a bundle declares get their own type (string, string or array, number); other names are
// accepted with a generic type and reported in `warnings` as unknown.

export interface SchemaLimits {
  readonly maxItems: number
}

const MAX_STRING = 256
const MAX_FIELDS = 64

const oneString = { type: 'string', maxLength: MAX_STRING }
const manyStrings = { type: 'array', maxItems: MAX_FIELDS, items: oneString }
const anyCategorical = { anyOf: [oneString, manyStrings] }
const aNumber = { type: 'number' }

function fieldSchema(f: FieldSpec): object {
  if (f.type === 'numeric') return aNumber
  return f.multi ? anyCategorical : oneString
}

function fieldGroup(fields: readonly FieldSpec[], kind: FieldSpec['type']): object {
  const known = fields.filter((f) => f.type === kind)
  return {
    type: 'object',
    maxProperties: MAX_FIELDS,
    propertyNames: { maxLength: 64 },
    properties: Object.fromEntries(known.map((f) => [f.name, fieldSchema(f)])),
    additionalProperties: kind === 'numeric' ? aNumber : anyCategorical,
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
          budget_ms: { type: 'number', minimum: 10, maximum: 60_000 },
          miss_policy: { type: 'string', enum: ['oov', 'budget'] },
        },
      },
    },
  }
}

const source = { type: 'string', enum: ['l1', 'l2', 'computed', 'oov', 'absent'] }

export function predictResponseSchema(manifest: Manifest): object {
  const quantiles = Object.fromEntries(Object.keys(manifest.mdn.quantiles).map((q) => [q, { type: 'number' }]))
  return {
    type: 'object',
    properties: {
      model: { type: 'object', properties: { name: { type: 'string' }, version: { type: 'string' } } },
      predictions: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            id: { type: 'string' },
            ctr: {
              type: 'object',
              properties: {
                mean: { type: 'number' }, raw_mean: { type: 'number' }, std: { type: 'number' },
                quantiles: { type: 'object', properties: quantiles },
                components: {
                  type: 'array',
                  items: { type: 'object', properties: { weight: { type: 'number' }, mu: { type: 'number' }, sigma: { type: 'number' } } },
                },
              },
            },
            sources: { type: 'object', properties: { image: source, text: source } },
          },
        },
      },
      warnings: { type: 'array', items: { type: 'string' } },
      timing_ms: { type: 'object', additionalProperties: { type: 'number' } },
    },
  }
}
