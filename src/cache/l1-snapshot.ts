import { createHash, randomBytes } from 'node:crypto'
import { open, readFile, rename, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { MODALITIES, type Modality } from '../modalities/modality.ts'
import { bufferToVector, vectorToBuffer } from './vector-codec.ts'

// Binary snapshot of the L1 cache, so an embedded (Redis-less) deployment does not start cold
// after a restart (issue 4). Layout, all integers little-endian:
//
//   magic        8 bytes  "CTRL1SN\0"
//   format       u32      SNAPSHOT_FORMAT
//   total bytes  u64      length of the whole file, trailer included (detects truncation)
//   header len   u32      then that many bytes of JSON: { "versions": { <modality>: <encoder version> },
//                         "jobs": [ { "key", "modality", "input" }, … ] }   (jobs: optional)
//   entry count  u32
//   entries      u32 key byte length, key (UTF-8), u32 float count, floats (float32 LE)
//   checksum     32 bytes sha256 of every byte before it
//
// Entries are written least recently used first, so loading them in order restores recency.
// A file is trusted only as a whole: it is parsed after the checksum matched and inserted only
// after every entry parsed. `jobs` are the in-process queue's jobs that were not done at shutdown
// (waiting or in flight), so an embedded deployment re-queues them at start instead of losing them.

export const SNAPSHOT_FORMAT = 1
const MAGIC = Buffer.from('CTRL1SN\0', 'latin1')
const CHECKSUM_BYTES = 32
const FIXED_HEADER_BYTES = MAGIC.length + 4 + 8 + 4
const WRITE_CHUNK_BYTES = 1 << 20

export type EncoderVersions = Readonly<Record<string, string>>

export type SnapshotRejection =
  | 'missing' | 'unreadable' | 'not-a-snapshot' | 'unsupported-format' | 'truncated' | 'corrupt' | 'foreign'

/** A background embedding job saved with the snapshot (the queue's EmbedJob). */
export interface SavedJob { readonly key: string; readonly modality: Modality; readonly input: string }

/**
 * A snapshot that parsed as a whole: its keys (least recently used first) and each one's vector,
 * copied out of the file's bytes when asked for. The vectors are not copied up front: a caller
 * that keeps them elsewhere (the L1's shared slabs) then holds the file and its kept copies at
 * once, not a third copy as well (253 MiB for a full default L1).
 */
export interface SnapshotEntries {
  readonly keys: readonly string[]
  vector(i: number): Float32Array
}

export type SnapshotRead =
  | { readonly ok: true; readonly entries: SnapshotEntries; readonly jobs: SavedJob[] }
  | { readonly ok: false; readonly rejection: SnapshotRejection; readonly reason: string }

export interface SnapshotWritten { readonly entries: number; readonly bytes: number }

/** Key order does not matter: `{a, b}` and `{b, a}` are the same versions. */
function canonicalVersions(versions: EncoderVersions): string {
  return JSON.stringify(Object.fromEntries(Object.keys(versions).sort().map((k) => [k, versions[k]])))
}

/** Writes `entries` (least recently used first) to `path` atomically: a temp file in the same folder, fsync, rename. */
export async function writeSnapshot(
  path: string, entries: ReadonlyArray<readonly [string, Float32Array]>, versions: EncoderVersions,
  jobs: readonly SavedJob[] = [],
): Promise<SnapshotWritten> {
  const saved = jobs.length > 0 ? `,"jobs":${JSON.stringify(jobs.map(({ key, modality, input }) => ({ key, modality, input })))}` : ''
  const header = Buffer.from(`{"versions":${canonicalVersions(versions)}${saved}}`, 'utf8')
  const keys = entries.map(([key]) => Buffer.from(key, 'utf8'))
  let total = FIXED_HEADER_BYTES + header.length + 4 + CHECKSUM_BYTES
  for (let i = 0; i < entries.length; i++) total += 8 + (keys[i]?.length ?? 0) + (entries[i]?.[1].byteLength ?? 0)

  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`)
  const file = await open(tmp, 'wx')
  let closed = false
  try {
    const sha = createHash('sha256')
    const chunk = Buffer.allocUnsafe(WRITE_CHUNK_BYTES)
    let used = 0
    const flush = async (): Promise<void> => {
      if (used === 0) return
      const part = chunk.subarray(0, used)
      sha.update(part)
      await file.write(part)
      used = 0
    }
    const put = async (bytes: Uint8Array): Promise<void> => {
      if (used + bytes.length > chunk.length) await flush()
      if (bytes.length > chunk.length) {
        sha.update(bytes)
        await file.write(bytes)
        return
      }
      chunk.set(bytes, used)
      used += bytes.length
    }
    const putU32 = async (n: number): Promise<void> => {
      if (used + 4 > chunk.length) await flush()
      used = chunk.writeUInt32LE(n, used)
    }

    const fixed = Buffer.alloc(FIXED_HEADER_BYTES)
    MAGIC.copy(fixed, 0)
    fixed.writeUInt32LE(SNAPSHOT_FORMAT, 8)
    fixed.writeBigUInt64LE(BigInt(total), 12)
    fixed.writeUInt32LE(header.length, 20)
    await put(fixed)
    await put(header)
    await putU32(entries.length)
    for (let i = 0; i < entries.length; i++) {
      const key = keys[i]
      const entry = entries[i]
      if (!key || !entry) continue
      await putU32(key.length)
      await put(key)
      await putU32(entry[1].length)
      await put(vectorToBuffer(entry[1]))
    }
    await flush()
    await file.write(sha.digest())
    await file.sync()
    closed = true
    await file.close()
    await rename(tmp, path)
  } catch (err) {
    // Already failing: the error rethrown below is the one to report, so clean-up errors are dropped.
    if (!closed) await file.close().catch(() => undefined)
    await unlink(tmp).catch(() => undefined)
    throw err
  }
  return { entries: entries.length, bytes: total }
}

function reject(rejection: SnapshotRejection, reason: string): SnapshotRead {
  return { ok: false, rejection, reason }
}

/** Reads a snapshot written for exactly `versions`; anything else is rejected with a reason, never half-loaded. */
export async function readSnapshot(path: string, versions: EncoderVersions): Promise<SnapshotRead> {
  let bytes: Buffer
  try {
    bytes = await readFile(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return reject('missing', `no snapshot at ${path}`)
    return reject('unreadable', `cannot read ${path}: ${(err as Error).message}`)
  }
  if (bytes.length < MAGIC.length || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) {
    return reject('not-a-snapshot', `${path} is not an L1 snapshot (bad magic)`)
  }
  if (bytes.length < FIXED_HEADER_BYTES) return reject('truncated', `${path} is truncated (${bytes.length} bytes)`)
  const format = bytes.readUInt32LE(8)
  if (format !== SNAPSHOT_FORMAT) return reject('unsupported-format', `${path} has format ${format}, this server reads ${SNAPSHOT_FORMAT}`)
  const declared = bytes.readBigUInt64LE(12)
  if (BigInt(bytes.length) < declared) return reject('truncated', `${path} is truncated (${bytes.length} of ${declared} bytes)`)
  if (BigInt(bytes.length) > declared) return reject('corrupt', `${path} has ${bytes.length - Number(declared)} trailing bytes`)

  const body = bytes.subarray(0, bytes.length - CHECKSUM_BYTES)
  const expected = createHash('sha256').update(body).digest()
  if (!expected.equals(bytes.subarray(bytes.length - CHECKSUM_BYTES))) return reject('corrupt', `${path} fails its checksum`)

  // From here the bytes are what the writer wrote; bounds are still checked so a writer bug cannot read past the end.
  const headerLen = body.readUInt32LE(20)
  let at = FIXED_HEADER_BYTES + headerLen
  if (at + 4 > body.length) return reject('corrupt', `${path} header overruns the file`)
  let stored: unknown
  try {
    stored = JSON.parse(body.toString('utf8', FIXED_HEADER_BYTES, at))
  } catch (err) {
    return reject('corrupt', `${path} header is not JSON: ${(err as Error).message}`)
  }
  const storedVersions = (stored as { versions?: unknown } | null)?.versions
  if (typeof storedVersions !== 'object' || storedVersions === null) return reject('corrupt', `${path} header has no versions`)
  const have = canonicalVersions(storedVersions as EncoderVersions)
  const want = canonicalVersions(versions)
  if (have !== want) return reject('foreign', `${path} was written for encoder versions ${have}, this bundle has ${want}`)

  const jobs = savedJobs((stored as { jobs?: unknown }).jobs)
  if (jobs === undefined) return reject('corrupt', `${path} header has malformed jobs`)

  const count = body.readUInt32LE(at)
  at += 4
  const keys: string[] = []
  // Byte offset and float count of each entry's vector in the file.
  const offsets = new Float64Array(count)
  const dims = new Uint32Array(count)
  for (let i = 0; i < count; i++) {
    if (at + 4 > body.length) return reject('corrupt', `${path} entry ${i} overruns the file`)
    const keyLen = body.readUInt32LE(at)
    at += 4
    if (at + keyLen + 4 > body.length) return reject('corrupt', `${path} entry ${i} overruns the file`)
    keys.push(body.toString('utf8', at, at + keyLen))
    at += keyLen
    const dim = body.readUInt32LE(at)
    at += 4
    if (at + dim * 4 > body.length) return reject('corrupt', `${path} entry ${i} overruns the file`)
    if (dim === 0) return reject('corrupt', `${path} entry ${i} has an empty vector`)
    offsets[i] = at
    dims[i] = dim
    at += dim * 4
  }
  if (at !== body.length) return reject('corrupt', `${path} has ${body.length - at} bytes after its last entry`)
  const vector = (i: number): Float32Array => {
    const from = offsets[i] as number
    const dim = dims[i] as number
    // subarray of the file buffer is never a whole ArrayBuffer, so this copies: L1 must not pin the file.
    return bufferToVector(body.subarray(from, from + dim * 4), dim) as Float32Array
  }
  return { ok: true, entries: { keys, vector }, jobs }
}

function savedJobs(value: unknown): SavedJob[] | undefined {
  if (value === undefined) return []
  if (!Array.isArray(value)) return undefined
  const jobs: SavedJob[] = []
  for (const j of value as unknown[]) {
    const { key, modality, input } = (j ?? {}) as Record<string, unknown>
    if (typeof key !== 'string' || typeof input !== 'string' || !MODALITIES.includes(modality as Modality)) return undefined
    jobs.push({ key, modality: modality as Modality, input })
  }
  return jobs
}
