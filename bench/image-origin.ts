import { createHash } from 'node:crypto'
import { readFileSync, readdirSync } from 'node:fs'
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { num, parseArgs, str } from './lib/args.ts'

// Image origin for the benchmarks: serves the sample JPEGs at `/img/<n>/<file>` on 127.0.0.1
// (every n is a distinct URL, so never-seen items get new URLs), after a latency drawn from a
// profile. Some URLs fail for good (404, chosen by a hash of the path so retries fail again),
// some requests fail transiently (503). `POST /_profile` switches the profile at run time, so one
// origin (one URL space, one set of cache keys) serves every scenario of a run.

export interface OriginProfile {
  /** Base latency, uniform in [minMs, maxMs]. */
  readonly minMs: number
  readonly maxMs: number
  /** Share of requests that are slow instead, uniform in [slowMinMs, slowMaxMs]. */
  readonly slowShare: number
  readonly slowMinMs: number
  readonly slowMaxMs: number
  /** Share of URLs that are permanently missing (404), by path hash. */
  readonly notFoundShare: number
  /** Share of requests answered 503 (transient). */
  readonly unavailableShare: number
}

export const PROFILES: Readonly<Record<string, OriginProfile>> = {
  /** For warming caches: quick and never failing. */
  fast: { minMs: 1, maxMs: 5, slowShare: 0, slowMinMs: 0, slowMaxMs: 0, notFoundShare: 0, unavailableShare: 0 },
  /** A CDN-ish origin: 20–150 ms, 3% take 1–3 s, 1% of URLs 404, 1% of requests 503. */
  default: { minMs: 20, maxMs: 150, slowShare: 0.03, slowMinMs: 1000, slowMaxMs: 3000, notFoundShare: 0.01, unavailableShare: 0.01 },
  /** A struggling origin (scenario 5): 80–400 ms, 8% take 1–3 s, same failures. */
  slow: { minMs: 80, maxMs: 400, slowShare: 0.08, slowMinMs: 1000, slowMaxMs: 3000, notFoundShare: 0.01, unavailableShare: 0.01 },
}

export interface OriginCounters { requests: number; ok: number; notFound: number; unavailable: number; slow: number }

function unitHash(s: string): number {
  return createHash('sha256').update(s).digest().readUInt32LE(0) / 4294967296
}

function isProfile(x: unknown): x is OriginProfile {
  if (typeof x !== 'object' || x === null) return false
  const o = x as Record<string, unknown>
  return ['minMs', 'maxMs', 'slowShare', 'slowMinMs', 'slowMaxMs', 'notFoundShare', 'unavailableShare']
    .every((k) => typeof o[k] === 'number' && Number.isFinite(o[k]) && (o[k] as number) >= 0)
}

export function startOrigin(opts: { imagesDir: string; port: number; profile: OriginProfile }): Promise<{ port: number; close(): Promise<void> }> {
  const files = new Map<string, Buffer>()
  for (const f of readdirSync(opts.imagesDir)) if (f.endsWith('.jpg')) files.set(f, readFileSync(join(opts.imagesDir, f)))
  let profile = opts.profile
  let counters: OriginCounters = { requests: 0, ok: 0, notFound: 0, unavailable: 0, slow: 0 }

  const control = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      try {
        const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'))
        const named = typeof body === 'object' && body !== null && 'name' in body ? PROFILES[String((body as { name: unknown }).name)] : undefined
        const next = named ?? body
        if (!isProfile(next)) throw new Error('expected {"name": "fast|default|slow"} or a full profile')
        profile = next
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ profile, counters }))
        counters = { requests: 0, ok: 0, notFound: 0, unavailable: 0, slow: 0 }
      } catch (err) {
        res.writeHead(400).end(String(err))
      }
    })
  }

  const server = createServer((req, res) => {
    const url = req.url ?? '/'
    if (req.method === 'POST' && url === '/_profile') return control(req, res)
    if (req.method === 'GET' && url === '/_counters') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(counters))
    counters.requests++
    const m = /^\/img\/(\d+)\/([A-Za-z0-9_.-]+\.jpg)$/.exec(url)
    const bytes = m ? files.get(m[2] as string) : undefined
    const p = profile
    const slow = Math.random() < p.slowShare
    if (slow) counters.slow++
    const delay = slow ? p.slowMinMs + Math.random() * (p.slowMaxMs - p.slowMinMs) : p.minMs + Math.random() * (p.maxMs - p.minMs)
    const timer = setTimeout(() => {
      if (!bytes || unitHash(url) < p.notFoundShare) { counters.notFound++; res.writeHead(404).end(); return }
      if (Math.random() < p.unavailableShare) { counters.unavailable++; res.writeHead(503, { 'retry-after': '1' }).end(); return }
      counters.ok++
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': bytes.length, 'cache-control': 'max-age=86400' }).end(bytes)
    }, delay)
    res.on('close', () => clearTimeout(timer))
  })
  server.keepAliveTimeout = 30_000
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port, '127.0.0.1', () => {
      const addr = server.address()
      const port = typeof addr === 'object' && addr ? addr.port : opts.port
      resolve({ port, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()) }) })
    })
  })
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const base = PROFILES[str(args, 'profile', 'default')]
  if (!base) throw new Error(`--profile must be one of ${Object.keys(PROFILES).join(', ')}`)
  const profile: OriginProfile = {
    minMs: num(args, 'min-ms', base.minMs), maxMs: num(args, 'max-ms', base.maxMs),
    slowShare: num(args, 'slow-share', base.slowShare), slowMinMs: num(args, 'slow-min-ms', base.slowMinMs),
    slowMaxMs: num(args, 'slow-max-ms', base.slowMaxMs), notFoundShare: num(args, 'not-found-share', base.notFoundShare),
    unavailableShare: num(args, 'unavailable-share', base.unavailableShare),
  }
  const origin = await startOrigin({ imagesDir: str(args, 'images', 'fixtures/sample/images'), port: num(args, 'port', 0), profile })
  // The parent reads the port from this line.
  process.stdout.write(`${JSON.stringify({ listening: origin.port })}\n`)
  // Bounded lifetime: an orphaned origin goes away by itself.
  const maxSeconds = num(args, 'max-seconds', 3600)
  const stop = (): void => { void origin.close().then(() => process.exit(0)) }
  setTimeout(stop, maxSeconds * 1000).unref()
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.on('disconnect', stop)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main()
