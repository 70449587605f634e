// Reading the cluster directly for the fleet bench: which master owns a key, and a scan of every
// master for vectors stored under one encoder version but computed by the other.
import { type Cluster, Command } from 'ioredis'
import { parseJobKey, partitionKeyPattern, partitionKeys, partitionOf } from '../../src/queue/partition-keys.ts'

/** The port of the master serving `key`, from the client's slot map (ioredis computes the slot). */
export function ownerPort(cluster: Cluster, key: string): number | undefined {
  const slot = new Command('get', [key]).getSlot()
  const master = cluster.slots[slot]?.[0]
  return master === undefined ? undefined : Number(master.split(':').pop())
}

export interface ForeignCount { aKeys: number; aKeysWithB: number; bKeys: number; bKeysWithA: number }

/**
 * Image vectors under version A whose first value is ≥ `threshold` (bundle B's encoder adds 100 to
 * every value) and under version B whose first value is below it.
 */
export async function countForeign(cluster: Cluster, prefix: string, version: { A: string; B: string }, threshold: number): Promise<ForeignCount> {
  const out: ForeignCount = { aKeys: 0, aKeysWithB: 0, bKeys: 0, bKeysWithA: 0 }
  for (const node of cluster.nodes('master')) {
    for (const v of ['A', 'B'] as const) {
      let cursor = '0'
      do {
        const [next, keys] = (await node.scan(cursor, 'MATCH', `${prefix}:image:${version[v]}:*`, 'COUNT', 1000))
        cursor = next
        if (keys.length === 0) continue
        const heads = await Promise.all(keys.map((k) => node.getrangeBuffer(k, 0, 3)))
        for (const h of heads) {
          if (h.length < 4) continue
          const first = h.readFloatLE(0)
          if (v === 'A') { out.aKeys++; if (first >= threshold) out.aKeysWithB++ } else { out.bKeys++; if (first < threshold) out.bKeysWithA++ }
        }
      } while (cursor !== '0')
    }
  }
  return out
}

/** Scans every master for keys matching `pattern`, calling `each` with every batch of keys and its node. */
async function scanMasters(cluster: Cluster, pattern: string, each: (node: ReturnType<Cluster['nodes']>[number], keys: string[]) => Promise<void>): Promise<void> {
  for (const node of cluster.nodes('master')) {
    let cursor = '0'
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) await each(node, keys)
    } while (cursor !== '0')
  }
}

export interface QueueAtEnd {
  /** Job records (waiting, delayed or leased) per `<modality>:<version>`. */
  jobsByVersion: Record<string, number>
  /** Jobs leased at the end (a consumer still holds them, or a lease not yet reclaimed). */
  leased: number
  /** Negative-cache markers (`…:neg:<cache key>`): jobs failed for good. */
  negativeMarkers: number
}

/** The queue's own state in the cluster, over every encoder version (an instance's depth gauge counts only its own). */
export async function queueAtEnd(cluster: Cluster, prefix: string): Promise<QueueAtEnd> {
  const out: QueueAtEnd = { jobsByVersion: {}, leased: 0, negativeMarkers: 0 }
  await scanMasters(cluster, partitionKeyPattern(prefix, 'jobs'), async (node, keys) => {
    for (const k of keys) {
      const tag = /\{(\w+):([^:}]+):\d+\}/.exec(k)
      const id = tag ? `${tag[1]}:${tag[2]}` : '?'
      out.jobsByVersion[id] = (out.jobsByVersion[id] ?? 0) + await node.hlen(k)
    }
  })
  await scanMasters(cluster, partitionKeyPattern(prefix, 'active'), async (node, keys) => {
    for (const k of keys) out.leased += await node.zcard(k)
  })
  await scanMasters(cluster, `${prefix}:q:{*}:neg:*`, async (_node, keys) => { out.negativeMarkers += keys.length })
  return out
}

/** Where a cache key without a vector is: still a job in its partition, negatively cached, or nowhere. */
export async function whereIs(cluster: Cluster, prefix: string, key: string, partitions: number): Promise<'queued' | 'negative' | 'nowhere'> {
  const parsed = parseJobKey(key)
  if (!parsed) return 'nowhere'
  const p = partitionKeys(prefix, parsed.modality, parsed.version, partitionOf(key, partitions))
  if (await cluster.hexists(p.jobs, key).catch(() => 0)) return 'queued'
  if (await cluster.exists(p.negative(key)).catch(() => 0)) return 'negative'
  return 'nowhere'
}
