import type { ConsumeOptions, Modality } from './types.ts'

/** A misconfigured consumer is a programming error: fail at start-up, naming the option. */
export function assertConsumeOptions(opts: ConsumeOptions): void {
  for (const name of ['concurrency', 'batchSize'] as const) {
    if (!Number.isInteger(opts[name]) || opts[name] < 1) throw new RangeError(`queue ${name} must be an integer ≥ 1, got ${opts[name]}`)
  }
  for (const [modality, n] of Object.entries(opts.modalityConcurrency ?? {})) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`queue concurrency of ${modality} must be an integer ≥ 1, got ${n}`)
  }
  if (!Number.isFinite(opts.batchWaitMs) || opts.batchWaitMs < 0) {
    throw new RangeError(`queue batchWaitMs must be a finite number ≥ 0, got ${opts.batchWaitMs}`)
  }
}

/** Concurrent handler calls for one modality's batches. */
export function concurrencyOf(opts: ConsumeOptions, modality: Modality): number {
  return opts.modalityConcurrency?.[modality] ?? opts.concurrency
}
