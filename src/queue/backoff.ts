export interface BackoffOptions {
  /** Delay before the second attempt, before jitter. */
  readonly baseMs: number
  /** Cap on the exponential delay. */
  readonly maxMs: number
}

/**
 * Delay before the next attempt after `failedAttempts` failures: exponential, capped, with
 * "equal jitter" (half fixed, half random) so retries of a burst spread out but never come
 * back sooner than half the exponential step.
 */
export function backoffDelayMs(failedAttempts: number, opts: BackoffOptions, random: () => number = Math.random): number {
  const exp = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.max(0, failedAttempts - 1))
  return Math.round(exp / 2 + random() * (exp / 2))
}
