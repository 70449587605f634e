import { zipfSampler } from '../workload.ts'
import { rng } from '../../support/random.ts'
import { sleep } from './children.ts'
import { scrape } from './metrics.ts'
import type { FieldValues, PredictItem } from './sample.ts'
import { predict } from './warm.ts'

// The recovery phase of the "popular items first" scenario: after a burst has left a large
// backlog, Zipf traffic over a hot set runs open loop while a probe asks for the whole hot set
// every `probeEveryMs`; the result is the time until every hot item is an L1 hit and the hit
// rate over time.

export interface RecoveryPoint {
  /** Seconds since the recovery phase began. */
  readonly t: number
  /** Share of the hot set's item-modalities served from L1 in this probe. */
  readonly probeL1: number
  /** Share of the traffic's item-modalities served from L1 since the previous point. */
  readonly trafficL1: number
  /** Embedding jobs waiting (ctrserve_queue_depth, every queue). */
  readonly depth: number
}

export interface RecoveryResult {
  readonly queuedAfterBurst: number
  readonly hotItems: number
  /** Seconds from the end of the burst until one probe found the whole hot set in L1; null: never. */
  readonly secondsToAllL1: number | null
  readonly trafficRequests: number
  readonly series: RecoveryPoint[]
}

export interface RecoveryOptions {
  readonly maxSeconds: number
  readonly probeEveryMs: number
  readonly trafficRate: number
  readonly trafficItems: number
  readonly zipfS: number
  readonly seed: number
}

export async function queueDepth(base: string): Promise<number> {
  let depth = 0
  for (const [k, v] of await scrape(base)) if (k.startsWith('ctrserve_queue_depth')) depth += v
  return depth
}

function l1Share(preds: ReadonlyArray<{ sources: Record<string, string> }>): { l1: number; served: number } {
  let l1 = 0
  let served = 0
  for (const p of preds) {
    for (const s of Object.values(p.sources)) {
      if (s === 'absent') continue
      served++
      if (s === 'l1') l1++
    }
  }
  return { l1, served }
}

export async function measureRecovery(base: string, hot: readonly PredictItem[], context: FieldValues | undefined, queuedAfterBurst: number, o: RecoveryOptions): Promise<RecoveryResult> {
  const t0 = performance.now()
  const draw = zipfSampler(hot.length, o.zipfS, rng(o.seed))
  const ctx = context ? { context } : {}
  let window = { l1: 0, served: 0 }
  let trafficRequests = 0
  let stop = false
  const inFlight = new Set<Promise<void>>()
  const traffic = (async (): Promise<void> => {
    for (let i = 0; !stop; i++) {
      const due = t0 + (i * 1000) / o.trafficRate
      const wait = due - performance.now()
      if (wait > 0) await sleep(wait)
      const picked = new Set<number>()
      while (picked.size < Math.min(o.trafficItems, hot.length)) picked.add(draw())
      const p = predict(base, { ...ctx, items: [...picked].map((k) => hot[k] as PredictItem), options: { miss_policy: 'oov' } }, 10_000)
        .then((r) => { const s = l1Share(r.predictions); window.l1 += s.l1; window.served += s.served; trafficRequests++ }, () => undefined)
      inFlight.add(p)
      void p.finally(() => inFlight.delete(p))
    }
  })()
  const series: RecoveryPoint[] = []
  let secondsToAllL1: number | null = null
  let stopAt = o.maxSeconds
  while ((performance.now() - t0) / 1000 < stopAt) {
    const r = await predict(base, { ...ctx, items: [...hot], options: { miss_policy: 'oov' } }, 10_000).catch(() => undefined)
    const t = Math.round((performance.now() - t0) / 100) / 10
    const probe = r ? l1Share(r.predictions) : { l1: 0, served: 1 }
    series.push({ t, probeL1: probe.l1 / probe.served, trafficL1: window.served > 0 ? window.l1 / window.served : Number.NaN, depth: await queueDepth(base) })
    window = { l1: 0, served: 0 }
    if (secondsToAllL1 === null && probe.l1 === probe.served) {
      secondsToAllL1 = t
      stopAt = Math.min(o.maxSeconds, t + 3) // a few more points to show it stays
    }
    await sleep(o.probeEveryMs)
  }
  stop = true
  await traffic
  await Promise.allSettled([...inFlight])
  return { queuedAfterBurst, hotItems: hot.length, secondsToAllL1, trafficRequests, series }
}
