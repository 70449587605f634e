// Exact percentiles over all recorded samples (runs are bounded: at most rate × duration values).

export interface LatencySummary {
  count: number
  mean: number
  p50: number
  p90: number
  p95: number
  p99: number
  p999: number
  max: number
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[rank] as number
}

export function summarize(values: readonly number[]): LatencySummary {
  const s = Float64Array.from(values).sort()
  let sum = 0
  for (const v of s) sum += v
  const r = (x: number): number => Math.round(x * 1000) / 1000
  return {
    count: s.length,
    mean: r(s.length ? sum / s.length : Number.NaN),
    p50: r(percentile(s, 0.5)),
    p90: r(percentile(s, 0.9)),
    p95: r(percentile(s, 0.95)),
    p99: r(percentile(s, 0.99)),
    p999: r(percentile(s, 0.999)),
    max: r(s.length ? (s[s.length - 1] as number) : Number.NaN),
  }
}
