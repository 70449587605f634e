import { LRUCache } from 'lru-cache'

/**
 * Keys this process sent to the durable queue in the last `intervalMs`. A hot miss is then sent
 * at most once per key per interval instead of on every request: the repeats in between are
 * known to be queued already. Sending again after the interval raises the job's demand, so demand
 * is counted at most once per key per interval per instance (a bounded rate, by design).
 * Bounded: past `maxKeys` the least recently sent key is forgotten (it is only sent sooner).
 */
export class RecentKeys {
  /** undefined: interval 0, every offer is sent (lru-cache reads ttl 0 as "never expires"). */
  private readonly sent: LRUCache<string, true> | undefined

  constructor(intervalMs: number, maxKeys: number) {
    if (intervalMs > 0) this.sent = new LRUCache<string, true>({ max: maxKeys, ttl: intervalMs, ttlAutopurge: false })
  }

  /** true when `key` was sent within the interval; otherwise records it as sent now. */
  seen(key: string): boolean {
    if (!this.sent) return false
    if (this.sent.has(key)) return true
    this.sent.set(key, true)
    return false
  }

  /** true when `key` was sent within the interval (nothing recorded). */
  has(key: string): boolean {
    return this.sent?.has(key) ?? false
  }

  /** The send failed for sure: let the next miss of `key` try again at once. */
  forget(key: string): void {
    this.sent?.delete(key)
  }
}
