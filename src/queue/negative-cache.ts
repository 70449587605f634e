/**
 * Keys whose embedding recently failed for good, each with an expiry. Bounded: when full, the
 * oldest entry goes first (a forgotten key only costs one more failing attempt).
 */
export class NegativeCache {
  private readonly expiries = new Map<string, number>()

  constructor(private readonly maxKeys: number, private readonly now: () => number = Date.now) {}

  add(key: string, ttlMs: number): void {
    this.expiries.delete(key) // re-insert so Map order stays oldest-first
    this.expiries.set(key, this.now() + ttlMs)
    while (this.expiries.size > this.maxKeys) {
      const oldest = this.expiries.keys().next()
      if (oldest.done === true) break
      this.expiries.delete(oldest.value)
    }
  }

  has(key: string): boolean {
    const expiry = this.expiries.get(key)
    if (expiry === undefined) return false
    if (expiry > this.now()) return true
    this.expiries.delete(key)
    return false
  }

  get size(): number {
    return this.expiries.size
  }
}
