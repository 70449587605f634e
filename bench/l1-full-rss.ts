import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DIST_SERVER, ensureBuilt } from '../support/dist-build.ts'
import { freePort } from '../support/free-port.ts'
import { build } from '../support/app.ts'
import { BUNDLE_DIR } from '../support/bundle.ts'
import { rng } from '../support/random.ts'
import { WebSocket } from 'undici'
import { parseArgs } from './lib/args.ts'
import { type Child, httpOk, sleep, spawnChild, waitFor } from './lib/children.ts'
import { memory } from './lib/proc-stats.ts'

// Total RSS of the server process with the default configuration and a full L1 (issue 11 target:
// ≤ 1 GiB). An L1 snapshot holding as many vectors as the default L1_MAX_BYTES takes (random
// vectors under the app's own cache keys, written by the L1's own snapshot writer) is loaded by a
// real server process, started as `./ctl start` starts it; 200 requests of 100 of its items are then
// served over HTTP, all from L1. RSS is read from /proc/<pid>/status before and after them, each
// time as it is and after a full GC of the request thread: loading the snapshot leaves the file's
// buffer (253 MB) as garbage that V8 collects when it gets to it, so the as-is figures say partly
// when GC ran (session 9: 872 MiB at the peak, 598 after the requests, 580 after the GC). The GC is asked for through the inspector,
// opened by SIGUSR1 on the port of --inspect-port (no --inspect at start).
//
//   npx tsx bench/l1-full-rss.ts          compiled (dist/server.js)   → bench/results/l1-full-rss.json
//   npx tsx bench/l1-full-rss.ts --tsx    the sources through tsx (A/B) → bench/results/l1-full-rss-tsx.json

const MiB = 1024 * 1024
const REQUESTS = 200
const ITEMS = 100

interface Filled { readonly inputs: number; readonly entries: number; readonly bytes: number; readonly maxBytes: number; readonly webConcurrency: number }

/** Writes a snapshot of an L1 filled to 99 % of its default budget; returns how many inputs it holds. */
async function writeFullSnapshot(path: string): Promise<Filled> {
  const app = await build(undefined, { LOG_LEVEL: 'silent', WARM_UP_REQUESTS: 0 })
  try {
    const l1 = app.store.l1
    const m = app.bundle.manifest
    const r = rng(7)
    let i = 0
    for (; l1.bytes < 0.99 * l1.maxBytes; i++) {
      l1.set(app.keyOf('image', imageUrl(i)), Float32Array.from({ length: m.oov.image.dim }, () => r() - 0.5))
      l1.set(app.keyOf('text', title(i)), Float32Array.from({ length: m.oov.text.dim }, () => r() - 0.5))
    }
    await l1.saveSnapshot(path, { versions: { image: m.encoders.image.version, text: m.encoders.text.version } })
    return { inputs: i, entries: l1.size, bytes: l1.bytes, maxBytes: l1.maxBytes, webConcurrency: app.config.WEB_CONCURRENCY }
  } finally {
    await app.close()
  }
}

const imageUrl = (i: number): string => `https://img.example/${i}.jpg`
const title = (i: number): string => `title ${i}`

/** Resident memory of the server (all its threads), MiB, and its thread count. */
function memoryOf(pid: number): NonNullable<ReturnType<typeof memory>> & { threads: number } {
  const m = memory(pid)
  if (!m) throw new Error(`no /proc/${pid}/status: the server is gone`)
  return { ...m, threads: readdirSync(`/proc/${pid}/task`).length }
}

/** A full GC of the server's main thread (HeapProfiler.collectGarbage), through the inspector SIGUSR1 opens. */
async function collectGarbage(server: Child, inspectPort: number): Promise<void> {
  process.kill(server.pid, 'SIGUSR1')
  let wsUrl: string | undefined
  await waitFor('server inspector', async () => {
    const targets = await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json() as Array<{ webSocketDebuggerUrl?: string }>
    wsUrl = targets[0]?.webSocketDebuggerUrl
    return wsUrl !== undefined
  }, 10_000, 100, server)
  const ws = new WebSocket(wsUrl as string)
  try {
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' })))
      ws.addEventListener('message', (ev) => { if ((JSON.parse(String(ev.data)) as { id?: number }).id === 1) resolve() })
      ws.addEventListener('error', () => reject(new Error('inspector connection failed')))
    })
  } finally {
    ws.close()
  }
  await sleep(1000) // freed pages leave the RSS as the allocator returns them
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const viaTsx = args.has('tsx')
  if (!viaTsx) await ensureBuilt()
  const dir = mkdtempSync(join(tmpdir(), 'l1-full-rss-'))
  try {
    const snapshot = join(dir, 'l1-snapshot.bin')
    const filled = await writeFullSnapshot(snapshot)

    const port = await freePort()
    const inspectPort = await freePort()
    const entry = viaTsx ? ['--import', 'tsx', 'src/server.ts'] : [DIST_SERVER]
    const nodeArgs = ['--max-semi-space-size=32', ...entry]
    const warnings: string[] = []
    const server = spawnChild('server', process.execPath, [`--inspect-port=127.0.0.1:${inspectPort}`, ...nodeArgs], {
      env: { MODEL_DIR: BUNDLE_DIR, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', L1_SNAPSHOT_PATH: snapshot },
      onStdout: (line) => warnings.push(line),
    })
    try {
      const base = `http://127.0.0.1:${port}`
      await waitFor('server /readyz', () => httpOk(`${base}/readyz`), 180_000, 200, server)
      const ignored = warnings.find((l) => l.includes('L1 snapshot ignored'))
      if (ignored) throw new Error(`the server did not load the snapshot: ${ignored}`)
      await sleep(2000)
      const ready = memoryOf(server.pid)
      await collectGarbage(server, inspectPort)
      const readyGc = memoryOf(server.pid)

      const r = rng(11)
      let allL1 = 0
      const sources: Record<string, number> = {}
      const statuses: Record<string, number> = {}
      for (let q = 0; q < REQUESTS; q++) {
        const items = Array.from({ length: ITEMS }, (_, j) => {
          const i = Math.floor(r() * filled.inputs)
          return { id: `${q}-${j}`, image_url: imageUrl(i), title: title(i) }
        })
        const res = await fetch(`${base}/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ items }) })
        statuses[res.status] = (statuses[res.status] ?? 0) + 1
        const body = await res.json() as { predictions?: Array<{ sources: { image: string; text: string } }> }
        for (const p of body.predictions ?? []) for (const s of [p.sources.image, p.sources.text]) sources[s] = (sources[s] ?? 0) + 1
        const served = body.predictions ?? []
        if (res.status === 200 && served.length === ITEMS && served.every((p) => p.sources.image === 'l1' && p.sources.text === 'l1')) allL1++
      }
      const after = memoryOf(server.pid)
      await collectGarbage(server, inspectPort)
      const afterGc = memoryOf(server.pid)

      const result = {
        mode: viaTsx ? 'tsx child process' : 'compiled child process',
        command: `node ${nodeArgs.join(' ').replace(DIST_SERVER, 'dist/server.js')}`,
        webConcurrency: filled.webConcurrency, threads: ready.threads,
        l1MaxMiB: filled.maxBytes / MiB, l1Entries: filled.entries, l1MiB: Math.round(filled.bytes / MiB),
        // As is, then after a full GC of the main thread (see the top of bench/l1-full-rss.ts).
        rssReadyMiB: ready.rssMiB, rssAnonReadyMiB: ready.rssAnonMiB,
        rssReadyAfterGcMiB: readyGc.rssMiB, rssAnonReadyAfterGcMiB: readyGc.rssAnonMiB,
        rssAfterRequestsMiB: after.rssMiB, rssAnonAfterRequestsMiB: after.rssAnonMiB,
        rssAfterRequestsAfterGcMiB: afterGc.rssMiB, rssAnonAfterRequestsAfterGcMiB: afterGc.rssAnonMiB, rssFileAfterRequestsAfterGcMiB: afterGc.rssFileMiB,
        peakRssMiB: afterGc.peakMiB,
        requestsAllL1: allL1, statuses, sources,
      }
      mkdirSync('bench/results', { recursive: true })
      writeFileSync(join('bench/results', viaTsx ? 'l1-full-rss-tsx.json' : 'l1-full-rss.json'), `${JSON.stringify(result, null, 2)}\n`)
      process.stdout.write(`${JSON.stringify(result)}\n`)
      if (allL1 !== REQUESTS) throw new Error(`${REQUESTS - allL1} of ${REQUESTS} requests were not all L1 hits (statuses ${JSON.stringify(statuses)}, sources ${JSON.stringify(sources)})`)
    } finally {
      // SIGTERM: the server rewrites its snapshot on the way out (into the temp folder, removed below).
      await server.stop(60_000)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
