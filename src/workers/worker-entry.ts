import { Worker } from 'node:worker_threads'

// How a worker thread is started. Compiled (dist/, `npm run build`), a worker runs its .js file as
// it is. Under tsx (tests, `ctrserve`), worker threads do not inherit tsx's loader on Node 20, so
// each one starts in worker-bootstrap.mjs, which registers tsx and then imports the entry. That is
// why the server runs compiled: an idle worker takes 8.5 MB of RSS plain and 31 MB with tsx, and the
// whole server with a full L1 817 MiB compiled against 1197 MiB through tsx (bench/l1-full-rss.ts).

/** This module runs compiled when its own file is .js: then so do its callers (one tsc output). */
const COMPILED = import.meta.url.endsWith('.js')
/** Under tsx only: dist/ has no .mjs files (tsc does not copy them) and needs none. */
const BOOTSTRAP = new URL('../embedding/worker-bootstrap.mjs', import.meta.url)

export interface WorkerStart {
  /** The file the thread runs first. */
  readonly url: URL
  readonly workerData: unknown
}

/**
 * How to start the worker whose entry is `entry`, as the source names it
 * (`new URL('./scorer-worker.ts', import.meta.url)`: tsc rewrites import specifiers, not URLs).
 */
export function workerStart(entry: URL, workerData: object): WorkerStart {
  if (!entry.pathname.endsWith('.ts')) throw new TypeError(`worker entry must name its .ts source (got ${entry.href})`)
  if (COMPILED) return { url: new URL(entry.href.replace(/\.ts$/, '.js')), workerData }
  return { url: BOOTSTRAP, workerData: { ...workerData, entry: entry.href } }
}

/** A worker thread running `entry` (see workerStart) with `workerData`. */
export function startWorker(entry: URL, workerData: object): Worker {
  const s = workerStart(entry, workerData)
  return new Worker(s.url, { workerData: s.workerData })
}
