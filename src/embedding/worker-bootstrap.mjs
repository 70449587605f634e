// Under tsx only (src/workers/worker-entry.ts; compiled workers start from their .js file):
// worker threads do not inherit tsx's loader on Node 20, so register it here, then load the
// TypeScript entry named in workerData.entry.
import { register } from 'tsx/esm/api'
import { workerData } from 'node:worker_threads'

register()
await import(workerData.entry)
