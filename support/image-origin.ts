import { createServer, type Server, type ServerResponse } from 'node:http'
import { readFile } from 'node:fs/promises'
import { join, normalize } from 'node:path'

// The image origin of tests and benches: a real HTTP server on loopback serving the JPEG files of
// a folder, optionally after a delay or with a forced status (slow and failing origins).
// bench/image-origin.ts is a different tool: a child process with latency profiles and a URL space.

export interface ImageOrigin {
  readonly baseUrl: string
  /** Requests received, by path. */
  readonly hits: Map<string, number>
  /** Delay before each response; change it at any time. */
  delayMs: number
  /** Answer with this status instead of the image (0 = serve the image). */
  failWith: number
  close(): Promise<void>
}

export interface ImageOriginOptions {
  readonly host?: string
  readonly delayMs?: number
}

/** A real HTTP origin on 127.0.0.1 serving the files of `dir` at `/<name>`. */
export async function startImageOrigin(dir: string, opts: ImageOriginOptions = {}): Promise<ImageOrigin> {
  const host = opts.host ?? '127.0.0.1'
  const hits = new Map<string, number>()
  const state = { delayMs: opts.delayMs ?? 0, failWith: 0 }
  const respond = (path: string, res: ServerResponse): void => {
    if (state.failWith > 0) { res.writeHead(state.failWith).end(); return }
    if (path.includes('..')) { res.writeHead(400).end(); return }
    readFile(join(dir, path)).then(
      (bytes) => res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': bytes.length }).end(bytes),
      () => res.writeHead(404, { 'content-type': 'text/plain' }).end('not found'),
    )
  }
  const server: Server = createServer((req, res) => {
    const path = normalize(decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/'))
    hits.set(path, (hits.get(path) ?? 0) + 1)
    if (state.delayMs <= 0) { respond(path, res); return }
    const timer = setTimeout(() => respond(path, res), state.delayMs)
    res.on('close', () => clearTimeout(timer))
  })
  await new Promise<void>((resolve) => server.listen(0, host, resolve))
  const addr = server.address()
  const port = typeof addr === 'object' && addr ? addr.port : 0
  return {
    baseUrl: `http://${host}:${port}`,
    hits,
    get delayMs() { return state.delayMs },
    set delayMs(v: number) { state.delayMs = v },
    get failWith() { return state.failWith },
    set failWith(v: number) { state.failWith = v },
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }),
  }
}
