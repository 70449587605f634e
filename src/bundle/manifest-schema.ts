import { readFileSync } from 'node:fs'
import { Ajv, type ErrorObject } from 'ajv'
import type { Manifest } from './manifest.ts'

// The one schema of manifest.json (docs/manifest.schema.json); training validates against the same file.
const schemaUrl = new URL('../../docs/manifest.schema.json', import.meta.url)

let validate: ((value: unknown) => boolean) & { errors?: ErrorObject[] | null } | undefined

function validator(): NonNullable<typeof validate> {
  // allErrors: a broken bundle is reported with every bad path at once, not one per restart.
  // discriminator: a field's errors come from the branch its `type` names, not from both.
  validate ??= new Ajv({ allErrors: true, discriminator: true, strict: false })
    .compile<Manifest>(JSON.parse(readFileSync(schemaUrl, 'utf8')) as object)
  return validate
}

/** `manifest.fields/3/dim: must be >= 1`-style lines, one per error. */
export function describeManifestErrors(errors: readonly ErrorObject[]): string[] {
  return errors.map((e) => {
    const path = `manifest${e.instancePath.replace(/\//g, '.').replace(/\.(\d+)(?=\.|$)/g, '[$1]')}`
    if (e.keyword === 'additionalProperties') return `${path}: unknown property ${JSON.stringify(e.params.additionalProperty)}`
    if (e.keyword === 'required') return `${path}: missing property ${JSON.stringify(e.params.missingProperty)}`
    if (e.keyword === 'const') return `${path}: must be ${JSON.stringify(e.params.allowedValue)}`
    if (e.keyword === 'discriminator') return `${path}.${String(e.params.tag)}: must be "categorical" or "numeric"`
    if (e.keyword === 'enum') return `${path}: must be one of ${JSON.stringify(e.params.allowedValues)}`
    return `${path}: ${e.message ?? 'is invalid'}`
  })
}

/** The manifest's schema errors, in words; empty when the value is a valid manifest. */
export function manifestSchemaErrors(value: unknown): string[] {
  const v = validator()
  return v(value) ? [] : describeManifestErrors(v.errors ?? [])
}
