// Parsing of the TAKE script's reply (ioredis `call` returns `unknown`) into typed jobs.
import type { PartitionKeys } from './partition-keys.ts'

export interface LeasedJob {
  readonly partition: PartitionKeys
  readonly key: string
  readonly input: string
  /** The job's own failures so far (handler outcome ok: false). */
  readonly attempts: number
  /** Leases that expired on it so far (a consumer crashed or hung while holding it). */
  readonly lostLeases: number
}

export interface TakeResult {
  readonly expired: number
  readonly reclaimed: number
  readonly malformed: number
  readonly jobs: LeasedJob[]
}

export function parseTakeReply(partition: PartitionKeys, reply: unknown): TakeResult {
  const [expired, reclaimed, malformed, leased] = Array.isArray(reply) ? reply as unknown[] : []
  const jobs: LeasedJob[] = []
  if (Array.isArray(leased)) {
    for (const row of leased as unknown[]) {
      if (!Array.isArray(row)) continue
      const [key, input, attempts, lostLeases]: unknown[] = row
      if (typeof key !== 'string' || typeof input !== 'string') continue
      jobs.push({ partition, key, input, attempts: Number(attempts) || 0, lostLeases: Number(lostLeases) || 0 })
    }
  }
  return { expired: Number(expired) || 0, reclaimed: Number(reclaimed) || 0, malformed: Number(malformed) || 0, jobs }
}

/** Jobs grouped by partition (scripts run on one partition at a time), in first-seen order. */
export function byPartition<T extends { readonly partition: PartitionKeys }>(items: readonly T[]): Array<[PartitionKeys, T[]]> {
  const groups = new Map<PartitionKeys, T[]>()
  for (const item of items) {
    const group = groups.get(item.partition)
    if (group) group.push(item)
    else groups.set(item.partition, [item])
  }
  return [...groups]
}
