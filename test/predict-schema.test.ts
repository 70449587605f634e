import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Ajv } from 'ajv'
import type { FieldSpec } from '../src/bundle/manifest.ts'
import { predictBodySchema } from '../src/predict/predict-schema.ts'

// A bundle with field names the synthetic world does not have: the request schema follows it.
const fields: FieldSpec[] = [
  { name: 'brand', scope: 'item', type: 'categorical', multi: false, hash: { algo: 'murmur3_x86_32', seed: 1 }, rows: 8, dim: 2, table: 't/brand.f32' },
  { name: 'colours', scope: 'item', type: 'categorical', multi: true, hash: { algo: 'murmur3_x86_32', seed: 2 }, rows: 8, dim: 2, table: 't/colours.f32' },
  { name: 'price', scope: 'item', type: 'numeric', edges: [1, 2], rows: 4, dim: 2, table: 't/price.f32' },
  { name: 'weekday', scope: 'context', type: 'categorical', multi: false, hash: { algo: 'murmur3_x86_32', seed: 3 }, rows: 8, dim: 2, table: 't/weekday.f32' },
]
const validate = new Ajv({ allErrors: false }).compile(predictBodySchema({ maxItems: 5 }, { fields }))

function firstError(body: unknown): string | undefined {
  if (validate(body)) return undefined
  const e = validate.errors?.[0]
  return `${e?.instancePath} ${e?.message}`
}

test('request schema types the fields the manifest declares, per scope', () => {
  const ok = { context: { categorical: { weekday: 'mon' } }, items: [{ id: 'a', categorical: { brand: 'x', colours: ['r', 'g'] }, numeric: { price: 3 } }] }
  assert.equal(firstError(ok), undefined)
  assert.equal(firstError({ items: [{ id: 'a', categorical: { brand: ['x'] } }] }), '/items/0/categorical/brand must be string')
  assert.equal(firstError({ items: [{ id: 'a', categorical: { colours: 'r' } }] }), undefined, 'a multi-valued field takes one string too')
  assert.equal(firstError({ items: [{ id: 'a', numeric: { price: 'cheap' } }] }), '/items/0/numeric/price must be number')
  assert.equal(firstError({ context: { categorical: { weekday: 7 } }, items: [{ id: 'a' }] }), '/context/categorical/weekday must be string')
})

test('names the manifest does not declare pass with a generic type (reported later as warnings)', () => {
  assert.equal(firstError({ context: { categorical: { brand: ['x', 'y'] } }, items: [{ id: 'a', categorical: { planet: ['m'] }, numeric: { mass: 2 } }] }), undefined)
  assert.match(firstError({ items: [{ id: 'a', numeric: { mass: 'heavy' } }] }) ?? '', /^\/items\/0\/numeric\/mass must be number/)
})
