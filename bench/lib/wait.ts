import { setTimeout as sleep } from 'node:timers/promises'

/** Polls `cond` every `everyMs` until it holds or `timeoutMs` passes; resolves with the ms waited, or undefined. */
export async function timeUntil(cond: () => Promise<boolean>, timeoutMs: number, everyMs = 100): Promise<number | undefined> {
  const t0 = performance.now()
  while (performance.now() - t0 < timeoutMs) {
    if (await cond()) return Math.round(performance.now() - t0)
    await sleep(everyMs)
  }
  return undefined
}
