import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createWriteStream, readFileSync } from 'node:fs'
import { cpus, loadavg, totalmem } from 'node:os'
import { join, resolve } from 'node:path'

// Shared by the operator-tool benchmarks: run the real `ctrserve` binary, generate inputs from the
// committed sample, describe the machine.

export const ROOT = resolve(import.meta.dirname, '..')
export const BIN = join(ROOT, 'bin/ctrserve.js')
export const SAMPLE_DIR = join(ROOT, 'fixtures/sample')
export const MODEL_DIR = join(ROOT, 'models/ctr-synth')
export const RESULTS_DIR = join(ROOT, 'bench/results')

export interface Run { code: number; stdout: string; stderr: string; seconds: number }

export function ctrserve(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const t0 = performance.now()
  return new Promise((done, fail) => {
    const c = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, MODEL_DIR, IMAGE_ALLOWED_HOSTS: '127.0.0.1', REDIS_URL: '', L1_SNAPSHOT_PATH: '', ...env },
    })
    let stdout = ''
    let stderr = ''
    c.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
    c.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
    c.once('error', fail)
    c.once('exit', (code) => done({ code: code ?? -1, stdout, stderr, seconds: (performance.now() - t0) / 1000 }))
  })
}

export function mustSucceed(what: string, r: Run): void {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}\n${r.stderr}\n${r.stdout}`)
}

export { readJsonl } from './jsonl.ts'

/**
 * `n` score rows `{context, item}` from the sample: a context holds for a run of `run` rows (one
 * request's worth of candidates), items cycle through the sample. Written with backpressure.
 */
export async function writeRows(path: string, n: number, run = 50): Promise<void> {
  const items = readFileSync(join(SAMPLE_DIR, 'items.jsonl'), 'utf8').split('\n').filter((l) => l.trim())
  const contexts = readFileSync(join(SAMPLE_DIR, 'contexts.jsonl'), 'utf8').split('\n').filter((l) => l.trim())
  const out = createWriteStream(path, { highWaterMark: 1 << 20 })
  let chunk = ''
  for (let i = 0; i < n; i++) {
    chunk += `{"context":${contexts[Math.floor(i / run) % contexts.length]},"item":${items[i % items.length]}}\n`
    if (chunk.length > 1 << 20) {
      if (!out.write(chunk)) await once(out, 'drain')
      chunk = ''
    }
  }
  out.end(chunk)
  await once(out, 'finish')
}

export interface Machine { cpus: number; cpu: string; memGiB: number; loadavg1mAtStart: number; node: string }

export function machine(): Machine {
  return {
    cpus: cpus().length, cpu: cpus()[0]?.model ?? '?', memGiB: +(totalmem() / 2 ** 30).toFixed(1),
    loadavg1mAtStart: +(loadavg()[0] ?? 0).toFixed(2), node: process.version,
  }
}
