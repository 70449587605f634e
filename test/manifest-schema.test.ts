import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, symlink, writeFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadBundle, parseManifest } from '../src/bundle/load-bundle.ts'
import { manifestSchemaErrors } from '../src/bundle/manifest-schema.ts'
import { manifestTypesSource, TYPES_PATH } from '../scripts/gen-manifest-types.ts'
import { BUNDLE_DIR } from '../support/bundle.ts'

const realText = readFileSync(join(BUNDLE_DIR, 'manifest.json'), 'utf8')
type Json = Record<string, unknown>
const real = (): Json => JSON.parse(realText) as Json

function refusal(m: Json): string {
  try {
    parseManifest(JSON.stringify(m), 'manifest.json')
  } catch (err) {
    return (err as Error).message
  }
  return assert.fail('a broken manifest was accepted')
}

test('src/bundle/manifest.ts is what docs/manifest.schema.json compiles to (npm run gen:manifest-types)', async () => {
  assert.equal(readFileSync(TYPES_PATH, 'utf8'), await manifestTypesSource())
})

test('the schema accepts the reference bundle, and loading it validates it', async () => {
  assert.deepEqual(manifestSchemaErrors(real()), [])
  const b = await loadBundle(BUNDLE_DIR, { verify: false })
  assert.equal(b.manifest.name, real().name)
})

test('broken manifests are refused, each broken path named with its reason', () => {
  const fields = (m: Json) => m.fields as Json[]
  const cases: Array<[string, (m: Json) => void, RegExp[]]> = [
    ['format', (m) => { m.format = 2 }, [/manifest\.format: must be 1/]],
    ['missing head', (m) => { delete m.head }, [/manifest: missing property "head"/]],
    ['field dim', (m) => { fields(m)[1]!.dim = 0 }, [/manifest\.fields\[1\]\.dim: must be >= 1/]],
    ['two broken fields', (m) => { fields(m)[0]!.scope = 'page'; delete fields(m)[2]!.hash },
      [/manifest\.fields\[0\]\.scope: must be one of \["context","item"\]/, /manifest\.fields\[2\]: missing property "hash"/]],
    ['numeric without edges', (m) => { delete fields(m).find((f) => f.type === 'numeric')!.edges }, [/missing property "edges"/]],
    ['unknown field type', (m) => { fields(m)[0]!.type = 'embedding' }, [/manifest\.fields\[0\]\.type/]],
    ['bad field name', (m) => { fields(m)[0]!.name = 'has space' }, [/manifest\.fields\[0\]\.name: must match pattern/]],
    ['escaping path', (m) => { fields(m)[0]!.table = '../../etc/passwd' }, [/manifest\.fields\[0\]\.table: must match pattern/]],
    ['bad sha', (m) => { (m.head as Json).sha256 = 'xyz' }, [/manifest\.head\.sha256: must match pattern/]],
    ['unknown property', (m) => { (m.mdn as Json).kk = 3 }, [/manifest\.mdn: unknown property "kk"/]],
    ['bisection bad', (m) => { (m.mdn as Json).bisection = { iterations: 0, span_sigmas: 10 } }, [/manifest\.mdn\.bisection\.iterations: must be >= 1/]],
    ['numeric rows', (m) => { const f = fields(m).find((x) => x.type === 'numeric')!; f.rows = 3 }, [/\.rows: must be len\(edges\) \+ 2/]],
    ['edges order', (m) => { const f = fields(m).find((x) => x.type === 'numeric')!; (f.edges as number[]).reverse() }, [/\.edges: must be strictly ascending/]],
    ['duplicate field', (m) => { fields(m).push({ ...fields(m)[0]! }) }, [/is declared twice/]],
    ['calibration lengths', (m) => { ((m.calibration as Json).y as number[]).pop() }, [/manifest\.calibration: x and y must have the same length/]],
    ['oov dim', (m) => { ((m.oov as Json).text as Json).dim = 7 }, [/manifest\.oov\.text\.dim: must equal encoders\.text\.output\.dim/]],
  ]
  for (const [name, breakIt, want] of cases) {
    const m = real()
    breakIt(m)
    const msg = refusal(m)
    for (const re of want) assert.match(msg, re, `${name}: ${msg}`)
  }
})

test('loadBundle refuses a bundle whose manifest breaks the schema, naming the path', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ctr-bad-bundle-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  for (const name of await readdir(BUNDLE_DIR)) if (name !== 'manifest.json') await symlink(join(BUNDLE_DIR, name), join(dir, name))
  const m = real()
  ;(m.fields as Json[])[3]!.rows = 'many'
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(m))
  await assert.rejects(loadBundle(dir), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'CTR_ERR_BAD_BUNDLE')
    assert.match(err.message, /manifest\.fields\[3\]\.rows: must be integer/)
    return true
  })
})
