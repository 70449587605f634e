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
    const sorted = [...this.values].sort((a, b) => a - b)
    return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN
  }
}
