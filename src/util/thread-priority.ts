import { readlinkSync } from 'node:fs'
import { readlink } from 'node:fs/promises'
import { setPriority } from 'node:os'

// Background embedding competes with the request thread for the same cores on a small machine.
// Linux gives every thread its own nice value (a thread id is a valid target of setpriority) and
// a thread inherits it from the thread that creates it; both are used here. Elsewhere these are
// no-ops that say why.

function tidOf(link: string): number {
  return Number(link.split('/').pop())
}

/** Lowers the calling thread's priority to `nice` (0: unchanged); a warning when it cannot. */
export function lowerThisThread(nice: number): string | undefined {
  if (nice <= 0) return undefined
  try {
    setPriority(tidOf(readlinkSync('/proc/thread-self')), nice)
    return undefined
  } catch (err) {
    return `could not lower the thread priority: ${String(err)}`
  }
}

/**
 * Lowers libuv's threadpool threads to `nice`: they decode images (sharp) for the image loader,
 * but were created by whichever thread used the pool first (the main thread, reading the bundle),
 * so they run at its priority. Each is found by running `readlink /proc/thread-self` on the pool
 * (the link resolves in the thread that runs it); rounds of small tasks reach every thread.
 * Returns how many threads were lowered. Also lowers the main thread's own file work, which the
 * request path does not do.
 */
export async function lowerThreadpool(nice: number, poolSize = Number(process.env.UV_THREADPOOL_SIZE ?? 4)): Promise<number> {
  if (nice <= 0 || process.platform !== 'linux') return 0
  const seen = new Set<number>()
  for (let round = 0; round < 50 && seen.size < poolSize; round++) {
    const links = await Promise.all(Array.from({ length: 4 * poolSize }, () => readlink('/proc/thread-self').catch(() => '')))
    for (const link of links) {
      const tid = tidOf(link)
      if (!Number.isInteger(tid) || tid <= 0 || seen.has(tid)) continue
      seen.add(tid)
      try { setPriority(tid, nice) } catch { seen.delete(tid); return seen.size }
    }
  }
  return seen.size
}
