import type { Manifest } from '../bundle/manifest.ts'

// JSON schemas of POST /predict, generated from the manifest and limits (never hand-copied).

export interface SchemaLimits {
  readonly maxItems: number
}

const MAX_STRING = 256
const MAX_FIELDS = 64

const fieldValues = {
  type: 'object',
  additionalProperties: false,
  properties: {
    categorical: {
      type: 'object',
      maxProperties: MAX_FIELDS,
      propertyNames: { maxLength: 64 },
      additionalProperties: {
        anyOf: [
          { type: 'string', maxLength: MAX_STRING },
          { type: 'array', maxItems: MAX_FIELDS, items: { type: 'string', maxLength: MAX_STRING } },
        ],
      },
    },
    numeric: {
      type: 'object',
      maxProperties: MAX_FIELDS,
      propertyNames: { maxLength: 64 },
      additionalProperties: { type: 'number' },
    },
  },
} as const

export function predictBodySchema(limits: SchemaLimits): object {
  return {
    type: 'object',
    required: ['items'],
    additionalProperties: false,
    properties: {
      context: fieldValues,
      items: {
        type: 'array',
        minItems: 1,
        maxItems: limits.maxItems,
        items: {
          type: 'object',
          required: ['id'],
          properties: {
            id: { type: 'string', minLength: 1, maxLength: MAX_STRING },
            image_url: { type: 'string', maxLength: 2048, pattern: '^$|^[hH][tT][tT][pP][sS]?://' },
            title: { type: 'string', maxLength: 1024 },
            categorical: fieldValues.properties.categorical,
            numeric: fieldValues.properties.numeric,
          },
        },
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
