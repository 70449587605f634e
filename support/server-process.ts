import { spawn, type ChildProcess } from 'node:child_process'
import { resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from './free-port.ts'
import { BUNDLE_DIR } from './bundle.ts'
import { DIST_SERVER, ensureBuilt } from './dist-build.ts'

const REPO = resolve(import.meta.dirname, '..')

export interface ServerProcess {
  readonly port: number
  readonly url: string
  readonly child: ChildProcess
  /** Everything the process wrote (pino JSON lines and stderr). */
  readonly output: string[]
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  kill(signal: NodeJS.Signals): void
}

/** A real `node dist/server.js` (built first when stale) on a free loopback port, ready (GET /healthz 200). */
export async function startServerProcess(env: Record<string, string>, port?: number, nodeArgs: readonly string[] = []): Promise<ServerProcess> {
  await ensureBuilt()
  const p = port ?? await freePort()
  const child = spawn(process.execPath, [...nodeArgs, DIST_SERVER], {
    cwd: REPO,
    env: { ...process.env, MODEL_DIR: BUNDLE_DIR, HOST: '127.0.0.1', PORT: String(p), LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const output: string[] = []
  child.stdout?.on('data', (b: Buffer) => output.push(b.toString()))
  child.stderr?.on('data', (b: Buffer) => output.push(b.toString()))
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once('exit', (code, signal) => res({ code, signal })))
  const url = `http://127.0.0.1:${p}`
  const deadline = Date.now() + 150_000 // bundle hashing + ONNX sessions take long on a busy machine
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`server exited at start: ${output.join('').slice(-2000)}`)
    try {
      if ((await fetch(`${url}/healthz`)).status === 200) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`server did not start: ${output.join('').slice(-2000)}`) }
    await sleep(200)
  }
  return { port: p, url, child, output, exited: () => exit, kill: (s) => { if (child.exitCode === null && child.signalCode === null) child.kill(s) } }
}
