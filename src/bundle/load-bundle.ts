import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { CtrError } from '../errors.ts'
import type { CategoricalField, FieldSpec, Manifest } from './manifest.ts'
import { manifestSchemaErrors } from './manifest-schema.ts'
import { categoricalRow } from '../modalities/categorical.ts'
import { countTinyWeights } from '../onnx/tiny-weights.ts'

export interface LoadedField {
  readonly spec: FieldSpec
  readonly table: Float32Array
  /** Offset of this field's slice in the head's fields_emb row. */
  readonly offset: number
}

export interface Bundle {
  readonly dir: string
  readonly manifest: Manifest
  readonly fields: readonly LoadedField[]
  readonly fieldsByScope: { readonly context: ReadonlyMap<string, LoadedField>; readonly item: ReadonlyMap<string, LoadedField> }
  readonly fieldsDim: number
  readonly oov: { readonly image: Float32Array; readonly text: Float32Array }
  /** ONNX files with float32 weights below 1e-30 (src/onnx/tiny-weights.ts), and how many; empty when files were not read. */
  readonly tinyWeights: Readonly<Record<string, number>>
}

function bad(what: string, why: string): CtrError {
  return new CtrError('BAD_BUNDLE', [what, why])
}

async function readF32(path: string, expectLength: number, what: string): Promise<Float32Array> {
  const buf = await readFile(path)
  if (buf.byteLength !== expectLength * 4) {
    throw bad(what, `expected ${expectLength} float32 values (${expectLength * 4} bytes), found ${buf.byteLength} bytes`)
  }
  // Copy into an aligned buffer: Buffer pools may place the bytes at an offset not divisible by 4.
  const out = new Float32Array(expectLength)
  new Uint8Array(out.buffer).set(buf)
  return out
}

/** Checks every file's sha256; returns the ONNX files that have tiny weights (they are read anyway). */
async function verifyFiles(dir: string, manifest: Manifest): Promise<Record<string, number>> {
  const tiny: Record<string, number> = {}
  for (const [file, meta] of Object.entries(manifest.files)) {
    const bytes = await readFile(join(dir, file)).catch((err: unknown) => {
      throw bad(file, `cannot be read (${String(err)}); is MODEL_DIR the bundle folder?`)
    })
    const digest = createHash('sha256').update(bytes).digest('hex')
    if (meta && digest !== meta.sha256) throw bad(file, `sha256 ${digest} does not match the manifest (${meta.sha256}); rebuild or re-copy the bundle`)
    if (file.endsWith('.onnx')) {
      const n = countTinyWeights(bytes)
      if (n > 0) tiny[file] = n
    }
  }
  return tiny
}

function checkHashVectors(manifest: Manifest): void {
  const byName = new Map<string, CategoricalField>()
  for (const f of manifest.fields) if (f.type === 'categorical') byName.set(f.name, f)
  for (const v of manifest.hash_test_vectors) {
    const field = byName.get(v.field)
    if (!field) throw bad('hash_test_vectors', `${v.field} is not a categorical field of the manifest`)
    const row = categoricalRow(field, v.value)
    if (row !== v.row) throw bad('hash_test_vectors', `${v.field}=${JSON.stringify(v.value)} hashes to row ${row}, training says ${v.row}`)
  }
}

function fieldProblems(fields: readonly FieldSpec[]): string[] {
  const out: string[] = []
  const seen = new Set<string>()
  fields.forEach((f, i) => {
    const at = `manifest.fields[${i}]`
    const key = `${f.scope}/${f.name}`
    if (seen.has(key)) out.push(`${at}.name: ${f.scope} field ${f.name} is declared twice`)
    seen.add(key)
    if (f.type !== 'numeric') return
    if (f.rows !== f.edges.length + 2) out.push(`${at}.rows: must be len(edges) + 2 = ${f.edges.length + 2}, found ${f.rows}`)
    if (f.edges.some((e, j) => j > 0 && e <= (f.edges[j - 1] as number))) out.push(`${at}.edges: must be strictly ascending`)
  })
  return out
}

/** What the schema cannot say: lengths that must agree, edges in order, names unique per scope. */
export function manifestConsistencyErrors(m: Manifest): string[] {
  const out = fieldProblems(m.fields)
  if (m.calibration.x.length !== m.calibration.y.length) out.push('manifest.calibration: x and y must have the same length')
  if (m.calibration.x.some((x, j) => j > 0 && x < (m.calibration.x[j - 1] as number))) out.push('manifest.calibration.x: must be ascending')
  const gh = m.mdn.gauss_hermite
  if (gh.nodes.length !== gh.weights.length) out.push('manifest.mdn.gauss_hermite: nodes and weights must have the same length')
  for (const mod of ['image', 'text'] as const) {
    const want = m.encoders[mod].output.dim
    if (m.oov[mod].dim !== want) out.push(`manifest.oov.${mod}.dim: must equal encoders.${mod}.output.dim (${want}), found ${m.oov[mod].dim}`)
  }
  return out
}

/** Parse and check manifest.json; a bad one is refused with every path and reason. */
export function parseManifest(raw: string, where: string): Manifest {
  let value: unknown
  try {
    value = JSON.parse(raw)
  } catch (err) {
    throw bad(where, `is not JSON (${String(err)})`)
  }
  const schema = manifestSchemaErrors(value)
  if (schema.length > 0) throw bad(where, `does not match docs/manifest.schema.json: ${schema.join('; ')}`)
  const manifest = value as Manifest
  const rest = manifestConsistencyErrors(manifest)
  if (rest.length > 0) throw bad(where, rest.join('; '))
  return manifest
}

/** Load and verify a bundle: every file's sha256, table sizes, and the shared hash test vectors. */
export async function loadBundle(dirArg: string, opts: { verify?: boolean } = {}): Promise<Bundle> {
  const dir = resolve(dirArg)
  const raw = await readFile(join(dir, 'manifest.json'), 'utf8').catch((err: unknown) => {
    throw bad(join(dir, 'manifest.json'), `cannot be read (${String(err)})`)
  })
  const manifest = parseManifest(raw, join(dir, 'manifest.json'))
  const tinyWeights = opts.verify ?? true ? await verifyFiles(dir, manifest) : {}

  const fields: LoadedField[] = []
  const context = new Map<string, LoadedField>()
  const item = new Map<string, LoadedField>()
  let offset = 0
  for (const spec of manifest.fields) {
    const table = await readF32(join(dir, spec.table), spec.rows * spec.dim, spec.table)
    const f: LoadedField = { spec, table, offset }
    offset += spec.dim
    fields.push(f)
    ;(spec.scope === 'context' ? context : item).set(spec.name, f)
  }
  checkHashVectors(manifest)
  const oov = {
    image: await readF32(join(dir, manifest.oov.image.file), manifest.oov.image.dim, manifest.oov.image.file),
    text: await readF32(join(dir, manifest.oov.text.file), manifest.oov.text.dim, manifest.oov.text.file),
  }
  return { dir, manifest, fields, fieldsByScope: { context, item }, fieldsDim: offset, oov, tinyWeights }
}
