// How often a queued item was asked for, decaying exponentially with a half-life. Stored as
// log2(Σ 2^(t_i / halfLife)) over the request times t_i: the decayed count at time t is
// 2^(score − t / halfLife), so one stored number orders jobs correctly at every later time
// without rescoring the queue, and the log keeps it finite however long the process runs.

/** The score after one more request at `nowMs` (`score` undefined: the first request). */
export function bumpDemand(score: number | undefined, nowMs: number, halfLifeMs: number): number {
  const x = nowMs / halfLifeMs
  if (score === undefined) return x
  const hi = Math.max(score, x)
  const lo = Math.min(score, x)
  return hi + Math.log2(1 + 2 ** (lo - hi))
}

/** Requests counted by `score`, decayed to `nowMs` (for logs and tests). */
export function decayedDemand(score: number, nowMs: number, halfLifeMs: number): number {
  return 2 ** (score - nowMs / halfLifeMs)
}
