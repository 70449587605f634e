/** The last `size` values seen, for tail quantiles of recent durations. */
export class RecentWindow {
  private readonly values: number[] = []
  private next = 0

  constructor(private readonly size: number) {}

  get count(): number {
    return this.values.length
  }

  add(v: number): void {
    if (this.values.length < this.size) this.values.push(v)
    else this.values[this.next] = v
    this.next = (this.next + 1) % this.size
  }

  /** The q-quantile (nearest rank) of the window; NaN when empty. */
  quantile(q: number): number {
    const n = this.values.length
    if (n === 0) return Number.NaN
    const rank = Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))
    // A tail quantile is the k-th largest for a small k: found in one pass without copying and
    // sorting the window (the head reserve asks for p99 on every request: 1 % of the request thread).
    if (n - rank <= TOP_SCAN) return kthLargest(this.values, n - rank)
    const sorted = [...this.values].sort((a, b) => a - b)
    return sorted[rank] as number
  }
}

const TOP_SCAN = 8

/** The k-th largest value (1 = the maximum) of `values`, k ≤ values.length. */
function kthLargest(values: readonly number[], k: number): number {
  const top = new Array<number>(k).fill(Number.NEGATIVE_INFINITY) // descending
  for (const v of values) {
    if (!(v > (top[k - 1] as number))) continue
    let i = k - 1
    while (i > 0 && v > (top[i - 1] as number)) { top[i] = top[i - 1] as number; i-- }
    top[i] = v
  }
  return top[k - 1] as number
}
