// Writes src/bundle/manifest.ts from docs/manifest.schema.json, the one schema of the bundle
// manifest. Run `npm run gen:manifest-types` after editing the schema; test/manifest-schema.test.ts
// fails while the committed file is out of date.
import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { compile, type JSONSchema } from 'json-schema-to-typescript'

export const SCHEMA_PATH = fileURLToPath(new URL('../docs/manifest.schema.json', import.meta.url))
export const TYPES_PATH = fileURLToPath(new URL('../src/bundle/manifest.ts', import.meta.url))

const BANNER = `// GENERATED from docs/manifest.schema.json by scripts/gen-manifest-types.ts: do not edit.
// Run \`npm run gen:manifest-types\` after changing the schema.
`

/** The TypeScript source the schema compiles to . */
export async function manifestTypesSource(): Promise<string> {
  const schema = JSON.parse(await readFile(SCHEMA_PATH, 'utf8')) as JSONSchema
  return compile(schema, 'Manifest', {
    bannerComment: BANNER,
    additionalProperties: false,
    unreachableDefinitions: true,
    style: { semi: false, singleQuote: true, printWidth: 120 },
  })
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await writeFile(TYPES_PATH, await manifestTypesSource())
  console.log(`wrote ${TYPES_PATH}`)
}
