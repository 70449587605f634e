import { execFile } from 'node:child_process'
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'

// Server processes run compiled (README "Quick start": 817 MiB of RSS against 1197 through tsx with
// a full L1), so whoever starts one makes sure dist/ is the build of the current src/ first.

const REPO = resolve(import.meta.dirname, '..')
/** The compiled server, as `./ctl start` and `npm start` run it. */
export const DIST_SERVER = join(REPO, 'dist', 'server.js')
const INPUTS = [join(REPO, 'src'), join(REPO, 'tsconfig.json'), join(REPO, 'tsconfig.build.json')]
const LOCK = join(REPO, 'dist', '.build-lock')
/** A lock older than this was left by a build that died (a build takes ~10 s). */
const STALE_LOCK_MS = 120_000

function newestMtimeMs(path: string): number {
  const s = statSync(path)
  if (!s.isDirectory()) return s.mtimeMs
  return readdirSync(path).reduce((m, name) => Math.max(m, newestMtimeMs(join(path, name))), s.mtimeMs)
}

/** dist/server.js is missing or older than a file under src/ (or a tsconfig). */
export function distIsStale(): boolean {
  let built: number
  try {
    built = statSync(DIST_SERVER).mtimeMs
  } catch {
    return true
  }
  return INPUTS.some((p) => newestMtimeMs(p) > built)
}

async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  mkdirSync(join(REPO, 'dist'), { recursive: true })
  for (;;) {
    try {
      mkdirSync(LOCK)
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const age = Date.now() - (statSync(LOCK, { throwIfNoEntry: false })?.mtimeMs ?? Date.now())
      if (age > STALE_LOCK_MS) rmSync(LOCK, { recursive: true, force: true })
      else await sleep(200)
    }
  }
  try {
    return await fn()
  } finally {
    rmSync(LOCK, { recursive: true, force: true })
  }
}

/**
 * `npm run build` (tsc -p tsconfig.build.json) in `dir` (this checkout, or another one for A/B
 * benches); rejects with tsc's messages when it fails.
 */
export async function buildDist(dir = REPO): Promise<void> {
  const tsc = join(dir, 'node_modules', 'typescript', 'bin', 'tsc')
  try {
    await promisify(execFile)(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: dir, maxBuffer: 16 << 20 })
  } catch (err) {
    const { stdout, stderr } = err as { stdout?: string; stderr?: string }
    throw new Error(`npm run build failed (fix the errors below, or run it by hand):\n${stdout ?? ''}${stderr ?? ''}`)
  }
}

let once: Promise<void> | undefined

/** Builds dist/ when it is stale; once per process, and one build at a time across processes. */
export function ensureBuilt(): Promise<void> {
  once ??= distIsStale() ? withLock(async () => { if (distIsStale()) await buildDist() }) : Promise.resolve()
  // A failed build is tried again by the next caller (the sources may have been fixed since).
  once.catch(() => { once = undefined })
  return once
}
