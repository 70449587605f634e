/** At most `limit` concurrent tasks per key (image origin host), the rest wait in FIFO order. */
export class HostLimiter {
  private readonly active = new Map<string, number>()
  private readonly waiting = new Map<string, Array<() => void>>()

  constructor(private readonly limit: number) {}

  async run<T>(host: string, task: () => Promise<T>): Promise<T> {
    if ((this.active.get(host) ?? 0) >= this.limit) {
      await new Promise<void>((resolve) => {
        const q = this.waiting.get(host) ?? []
        q.push(resolve)
        this.waiting.set(host, q)
      })
    }
    this.active.set(host, (this.active.get(host) ?? 0) + 1)
    try {
      return await task()
    } finally {
      const left = (this.active.get(host) ?? 1) - 1
      if (left === 0) this.active.delete(host)
      else this.active.set(host, left)
      const q = this.waiting.get(host)
      const next = q?.shift()
      if (q && q.length === 0) this.waiting.delete(host)
      next?.()
    }
  }
}
