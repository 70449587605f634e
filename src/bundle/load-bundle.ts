import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { CtrError } from '../errors.ts'
import type { FieldSpec, Manifest } from './manifest.ts'
import { categoricalRow } from '../modalities/categorical.ts'

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

async function verifyFiles(dir: string, manifest: Manifest): Promise<void> {
  for (const [file, meta] of Object.entries(manifest.files)) {
    const bytes = await readFile(join(dir, file)).catch((err: unknown) => {
      throw bad(file, `cannot be read (${String(err)}); is MODEL_DIR the bundle folder?`)
    })
    const digest = createHash('sha256').update(bytes).digest('hex')
    if (digest !== meta.sha256) throw bad(file, `sha256 ${digest} does not match the manifest (${meta.sha256}); rebuild or re-copy the bundle`)
  }
}

function checkHashVectors(manifest: Manifest, byName: Map<string, FieldSpec>): void {
  for (const v of manifest.hash_test_vectors) {
    const field = byName.get(v.field)
    if (!field) throw bad('hash_test_vectors', `unknown field ${v.field}`)
    const row = categoricalRow(field, v.value)
    if (row !== v.row) throw bad('hash_test_vectors', `${v.field}=${JSON.stringify(v.value)} hashes to row ${row}, training says ${v.row}`)
  }
}

/** Load and verify a bundle: every file's sha256, table sizes, and the shared hash test vectors. */
export async function loadBundle(dirArg: string, opts: { verify?: boolean } = {}): Promise<Bundle> {
  const dir = resolve(dirArg)
  const raw = await readFile(join(dir, 'manifest.json'), 'utf8').catch((err: unknown) => {
    throw bad(join(dir, 'manifest.json'), `cannot be read (${String(err)})`)
  })
  const manifest = JSON.parse(raw) as Manifest
  if (manifest.format !== 1) throw bad('manifest.format', `unsupported format ${String(manifest.format)}, this server reads format 1`)
  if (opts.verify ?? true) await verifyFiles(dir, manifest)

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
  checkHashVectors(manifest, new Map(manifest.fields.map((f) => [f.name, f])))
  const oov = {
    image: await readF32(join(dir, manifest.oov.image.file), manifest.oov.image.dim, manifest.oov.image.file),
    text: await readF32(join(dir, manifest.oov.text.file), manifest.oov.text.dim, manifest.oov.text.file),
  }
  return { dir, manifest, fields, fieldsByScope: { context, item }, fieldsDim: offset, oov }
}
