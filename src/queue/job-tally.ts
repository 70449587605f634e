import type { JobMetricOutcome, Modality, QueueMetrics } from './types.ts'

/** Counts job outcomes locally and reports them in one `inc` per label pair (prom-client is not free). */
export class JobTally {
  private readonly counts = new Map<string, { modality: Modality; outcome: JobMetricOutcome; n: number }>()

  add(modality: Modality, outcome: JobMetricOutcome, n = 1): void {
    const id = `${modality}\u0000${outcome}`
    const row = this.counts.get(id)
    if (row) row.n += n
    else this.counts.set(id, { modality, outcome, n })
  }

  flush(metrics: QueueMetrics): void {
    for (const { modality, outcome, n } of this.counts.values()) metrics.jobs.inc({ modality, outcome }, n)
    this.counts.clear()
  }
}
