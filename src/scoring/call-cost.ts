// How long a scorer call takes: a fixed part (the message each way, the ORT run's set-up) plus a
// part per row, fitted to the last calls by the Theil–Sen estimator (the median of the slopes
// between pairs of calls, then the median intercept), which a cold first call or a GC pause does
// not move: least squares on the same window let one cold 1-row call flatten the slope to zero.
// A single per-row average, before this, charged each call's fixed part to its rows: after calls
// of one or two rows (the warm-up, a cold JIT) a row looked ten times its cost, and a dozen small
// concurrent requests were shed as if a second of work were queued (CI, test/routes.test.ts).

export interface CallCostFit {
  readonly fixedMs: number
  readonly perRowMs: number
}

const NONE: CallCostFit = { fixedMs: 0, perRowMs: 0 }
const REFIT_EVERY = 4

export class CallCost {
  private readonly rows: number[] = []
  private readonly ms: number[] = []
  private next = 0
  private fitted: CallCostFit | undefined
  /** Calls observed since the last fit. */
  private stale = 0

  private readonly slopes: Float64Array

  /** `size` calls remembered (16: 120 pairs, a few microseconds a fit, once per call when asked). */
  constructor(private readonly size = 16) {
    this.slopes = new Float64Array((size * (size - 1)) / 2)
  }

  observe(rows: number, ms: number): void {
    if (!(rows > 0) || !Number.isFinite(ms) || ms < 0) return
    if (this.rows.length < this.size) { this.rows.push(rows); this.ms.push(ms) } else { this.rows[this.next] = rows; this.ms[this.next] = ms }
    this.next = (this.next + 1) % this.size
    this.stale++
  }

  /**
   * Refitted when asked after a call was observed, and once the window is full, after every
   * REFIT_EVERY calls (a fit takes ~10 µs here, and the request thread asks on every request).
   */
  fit(): CallCostFit {
    if (this.fitted === undefined || (this.stale > 0 && (this.rows.length < this.size || this.stale >= REFIT_EVERY))) {
      this.fitted = this.compute()
      this.stale = 0
    }
    return this.fitted
  }

  /** Expected time of `calls` calls holding `rows` rows in all. */
  estimateMs(calls: number, rows: number): number {
    const f = this.fit()
    return calls * f.fixedMs + rows * f.perRowMs
  }

  private compute(): CallCostFit {
    const { rows: n, ms: y } = this
    let k = 0
    for (let i = 0; i < n.length; i++) {
      for (let j = i + 1; j < n.length; j++) {
        const dn = (n[j] as number) - (n[i] as number)
        if (dn !== 0) this.slopes[k++] = ((y[j] as number) - (y[i] as number)) / dn
      }
    }
    // Calls all of one size: nothing tells the parts apart, and the cost per row is exact for a
    // queue of calls of that size. The same when the line would have a negative part.
    const perRowOnly = (): CallCostFit => ({ fixedMs: 0, perRowMs: median(Float64Array.from(n, (r, i) => (y[i] as number) / r)) })
    if (k === 0) return n.length === 0 ? NONE : perRowOnly()
    const slope = median(this.slopes.subarray(0, k))
    if (slope <= 0) return { fixedMs: median(Float64Array.from(y)), perRowMs: 0 }
    const fixed = median(Float64Array.from(n, (r, i) => (y[i] as number) - slope * r))
    return fixed < 0 ? perRowOnly() : { fixedMs: fixed, perRowMs: slope }
  }
}

/** The median of `values`, sorted in place (a typed array's numeric sort: no comparator calls). */
function median(values: Float64Array): number {
  values.sort()
  const h = values.length >> 1
  return values.length % 2 === 1 ? (values[h] as number) : ((values[h - 1] as number) + (values[h] as number)) / 2
}
