import type { RedisCaller } from './lua-script.ts'
import { RENEW } from './redis-scripts.ts'
import { byPartition, type LeasedJob } from './take-reply.ts'

/**
 * Keeps one delivery's leases alive while its batch runs: every lease time / 3 the expiry of each
 * job it still holds is pushed one lease time ahead, so a slow batch is never reclaimed (by
 * another instance or by this one). Only a consumer that stopped renewing (crashed, hung, cut off
 * from Redis for a whole lease time) loses its jobs. Two missed renewals are tolerated.
 */
export class LeaseRenewal {
  private timer: NodeJS.Timeout | undefined
  private running = false

  constructor(
    private readonly redis: RedisCaller,
    private readonly token: string,
    private readonly jobs: readonly LeasedJob[],
    private readonly leaseMs: number,
    private readonly onError: () => void,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.renew(), Math.max(10, Math.floor(this.leaseMs / 3)))
  }

  stop(): void {
    clearInterval(this.timer)
  }

  private async renew(): Promise<void> {
    if (this.running) return // a renewal still waiting on Redis: do not pile up more
    this.running = true
    try {
      await Promise.all(byPartition(this.jobs).map(([p, jobs]) =>
        RENEW.run(this.redis, [p.active, p.owner], [this.leaseMs, this.token, ...jobs.map((j) => j.key)])))
    } catch {
      this.onError()
    } finally {
      this.running = false
    }
  }
}
