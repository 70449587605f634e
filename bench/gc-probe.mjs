// GC pauses and event-loop delay of every thread of a server, for finding where a latency tail
// comes from. Preloaded into the server (and, with it, into each worker thread) through
// NODE_OPTIONS; appends one line per GC pause over 1 ms and one line per thread per second:
//
//   npx tsx bench/hit-path.ts --label gc --rates 200 --env "NODE_OPTIONS=--import=./bench/gc-probe.mjs;GC_PROBE_OUT=/tmp/gc"
//   → /tmp/gc.gc.log    `<ms epoch> t<threadId> <minor|major|incremental|weakcb> <pause ms>`
//   → /tmp/gc.eld.log   `<ms epoch> t<threadId> p50 <ms> p99 <ms> max <ms>` (event-loop delay)
import { appendFileSync } from 'node:fs'
import { PerformanceObserver, monitorEventLoopDelay } from 'node:perf_hooks'
import { threadId } from 'node:worker_threads'

const out = process.env.GC_PROBE_OUT ?? '/tmp/gc-probe'
const KIND = { 1: 'minor', 2: 'major', 4: 'incremental', 8: 'weakcb' }
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    if (e.duration > 1) appendFileSync(`${out}.gc.log`, `${Date.now()} t${threadId} ${KIND[e.detail?.kind] ?? e.detail?.kind} ${e.duration.toFixed(1)}\n`)
  }
}).observe({ entryTypes: ['gc'] })
const delay = monitorEventLoopDelay({ resolution: 1 })
delay.enable()
setInterval(() => {
  const ms = (ns) => (ns / 1e6).toFixed(1)
  appendFileSync(`${out}.eld.log`, `${Date.now()} t${threadId} p50 ${ms(delay.percentile(50))} p99 ${ms(delay.percentile(99))} max ${ms(delay.max)}\n`)
  delay.reset()
}, 1000).unref()
