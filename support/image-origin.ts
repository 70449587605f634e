import { createServer, type Server } from 'node:http'
import { readFile } from 'node:fs/promises'
import { join, normalize } from 'node:path'

export interface ImageOrigin {
  readonly baseUrl: string
  /** Requests served, by path. */
  readonly hits: Map<string, number>
  close(): Promise<void>
}

/** A real HTTP origin on 127.0.0.1 serving the JPEG files of `dir` at `/<name>`. */
export async function startImageOrigin(dir: string, host = '127.0.0.1'): Promise<ImageOrigin> {
  const hits = new Map<string, number>()
  const server: Server = createServer((req, res) => {
    const path = normalize(decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/'))
    hits.set(path, (hits.get(path) ?? 0) + 1)
    if (path.includes('..')) { res.writeHead(400).end(); return }
    readFile(join(dir, path)).then(
      (bytes) => res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': bytes.length }).end(bytes),
      () => res.writeHead(404, { 'content-type': 'text/plain' }).end('not found'),
    )
  })
  await new Promise<void>((resolve) => server.listen(0, host, resolve))
  const addr = server.address()
  const port = typeof addr === 'object' && addr ? addr.port : 0
  return {
    baseUrl: `http://${host}:${port}`,
    hits,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }),
  }
}
