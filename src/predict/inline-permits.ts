// The process-wide bound on the `budget` policy's inline work: at most `limit` misses computed on
// request paths at once, whatever the number of requests. A request never waits for a permit
// (waiting spends the budget it is meant to protect): what it cannot get now is served as OOV.

export class InlinePermits {
  private used = 0

  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.used
  }

  /** Takes up to `wanted` permits now; returns how many were granted (maybe 0). */
  tryTake(wanted: number): number {
    const granted = Math.max(0, Math.min(wanted, this.limit - this.used))
    this.used += granted
    return granted
  }

  give(n: number): void {
    this.used = Math.max(0, this.used - n)
  }
}
