import { createWriteStream, existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { DIST_SERVER, buildDist, ensureBuilt } from '../../support/dist-build.ts'
import { freePort } from '../../support/free-port.ts'
import { type Child, httpOk, spawnChild, waitFor } from './children.ts'

// Start the participants of a run: redis-server, the image origin, ctrserve, the Python peer.

export async function startRedis(): Promise<{ child: Child; url: string; port: number }> {
  const port = await freePort()
  const child = spawnChild('redis', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes', '--maxmemory', '2gb'])
  const url = `redis://127.0.0.1:${port}`
  const { Redis } = await import('ioredis')
  await waitFor('redis', async () => {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    r.on('error', () => undefined)  // refused while redis-server starts; the poll retries
    try { await r.connect(); return (await r.ping()) === 'PONG' } finally { r.disconnect() }
  }, 10_000, 100, child)
  return { child, url, port }
}

export async function startOrigin(profile: string): Promise<{ child: Child; base: string; setProfile(name: string): Promise<void> }> {
  let port = 0
  const child = spawnChild('origin', process.execPath, ['--import', 'tsx', 'bench/image-origin.ts', '--profile', profile, '--max-seconds', '2400'], {
    onStdout: (line) => {
      try { const m = JSON.parse(line) as { listening?: number }; if (m.listening) port = m.listening } catch { /* not our line */ }
    },
  })
  await waitFor('origin', async () => port > 0, 15_000, 100, child)
  const base = `http://127.0.0.1:${port}`
  return {
    child, base,
    setProfile: async (name) => {
      const res = await fetch(`${base}/_profile`, { method: 'POST', body: JSON.stringify({ name }), signal: AbortSignal.timeout(2000) })
      if (!res.ok) throw new Error(`origin profile ${name}: ${res.status} ${await res.text()}`)
      await res.arrayBuffer().catch(() => undefined)
    },
  }
}

export interface ServerOptions {
  readonly env: Record<string, string>
  /** Write a V8 CPU profile of the server into this folder on exit. */
  readonly cpuProfDir?: string
  /**
   * Another checkout (of an earlier commit, with its node_modules) to run the server from, for A/B
   * runs: compiled there when it has tsconfig.build.json, else its sources through tsx, as it ran then.
   */
  readonly dir?: string
}

/** The server's entry, built first: this tree's dist/, or another checkout's as it starts its server. */
async function serverEntry(dir: string | undefined): Promise<string[]> {
  if (dir === undefined) {
    await ensureBuilt()
    return [DIST_SERVER]
  }
  if (!existsSync(join(dir, 'tsconfig.build.json'))) return ['--import', 'tsx', 'src/server.ts']
  await buildDist(dir)
  return ['dist/server.js']
}

export async function startServer(name: string, o: ServerOptions): Promise<{ child: Child; base: string }> {
  const entry = await serverEntry(o.dir)
  const port = await freePort()
  const flags = o.cpuProfDir ? (mkdirSync(o.cpuProfDir, { recursive: true }), ['--cpu-prof', '--cpu-prof-dir', o.cpuProfDir]) : []
  // As `./ctl start` and `npm start` launch it: compiled, with README "Every core"'s young generation size;
  // BENCH_NODE_FLAGS adds V8/node flags for A/B runs (space-separated).
  const extra = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean)
  const child = spawnChild(name, process.execPath, [...flags, ...extra, '--max-semi-space-size=32', ...entry], {
    env: { HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', MODEL_DIR: 'models/ctr-synth', ...o.env },
    ...(o.dir ? { cwd: o.dir } : {}),
  })
  // BENCH_SERVER_LOG=<file>: the server's stdout and stderr appended there (e.g. with
  // BENCH_NODE_FLAGS=--trace-gc, to see the pauses behind late answers).
  const logTo = process.env.BENCH_SERVER_LOG
  if (logTo) {
    const out = createWriteStream(logTo, { flags: 'a' })
    child.proc.stdout?.pipe(out)
    child.proc.stderr?.pipe(out)
  }
  const base = `http://127.0.0.1:${port}`
  await waitFor(`${name} /readyz`, () => httpOk(`${base}/readyz`), 90_000, 200, child)
  return { child, base }
}

export async function startPeer(name: string, env: Record<string, string>): Promise<{ child: Child; base: string }> {
  const port = await freePort()
  const child = spawnChild(name, 'python3', ['-m', 'uvicorn', 'bench.peer.app:app', '--host', '127.0.0.1', '--port', String(port),
    '--loop', 'uvloop', '--http', 'httptools', '--workers', '1', '--log-level', 'warning', '--no-access-log'], {
    env: { MODEL_DIR: 'models/ctr-synth', PYTHONUNBUFFERED: '1', OMP_NUM_THREADS: '1', ...env },
  })
  const base = `http://127.0.0.1:${port}`
  await waitFor(`${name} /readyz`, () => httpOk(`${base}/readyz`), 90_000, 200, child)
  return { child, base }
}
