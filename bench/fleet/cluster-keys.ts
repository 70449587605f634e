// Reading the cluster directly for the fleet bench: which master owns a key, and a scan of every
// master for vectors stored under one encoder version but computed by the other.
import { type Cluster, Command } from 'ioredis'

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
