// One warning when Redis becomes unavailable and one line when it returns, however many calls
// fail in between (issue 6: a log line per outage, not per request).

export interface CacheLogger {
  warn(obj: object, msg: string): void
  info(obj: object, msg: string): void
}

/** A flapping Redis (timeouts between successes) logs at most one warning per this interval. */
const MIN_WARN_INTERVAL_MS = 10_000

export class OutageLog {
  readonly #logger: CacheLogger
  #down = false
  #downSince = 0
  #failures = 0
  #lastWarnAt = -Infinity
  #warned = false

  constructor(logger: CacheLogger) {
    this.#logger = logger
  }

  get down(): boolean {
    return this.#down
  }

  failed(op: string, err: Error): void {
    this.#failures++
    if (this.#down) return
    const now = Date.now()
    this.#down = true
    this.#downSince = now
    this.#failures = 1
    this.#warned = now - this.#lastWarnAt >= MIN_WARN_INTERVAL_MS
    if (!this.#warned) return
    this.#lastWarnAt = now
    this.#logger.warn({ op, err: err.message }, 'redis unavailable: embeddings are served from L1 only until it returns')
  }

  recovered(): void {
    if (!this.#down) return
    this.#down = false
    if (!this.#warned) return
    this.#logger.info({ downMs: Date.now() - this.#downSince, failures: this.#failures }, 'redis reachable again: L2 lookups resumed')
  }
}
