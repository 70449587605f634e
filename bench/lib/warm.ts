import { Redis } from 'ioredis'
import { embeddingKey } from '../../src/cache/keys.ts'
import { partitionKeyPattern } from '../../src/queue/partition-keys.ts'
import { sleep } from './children.ts'
import { type FieldValues, type PredictBody, type PredictItem, type Sample, itemVariant } from './sample.ts'

// Cache warming. Through the server itself (requests with the `oov` policy, then re-ask until every
// source is `l1`), or by copying vectors in Redis under the keys of item variants (scenario 2).

interface Resp { predictions: Array<{ sources: Record<string, string> }> }

export async function predict(base: string, body: PredictBody, timeoutMs = 30_000): Promise<Resp> {
  const res = await fetch(`${base}/predict`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs),
  })
  const text = await res.text()
  if (res.status !== 200) throw new Error(`POST ${base}/predict: ${res.status} ${text.slice(0, 500)}`)
  return JSON.parse(text) as Resp
}

export interface WarmResult { rounds: number; seconds: number; notL1: number; total: number }

/**
 * Sends every item (chunks of `chunk`) until all sources come back `l1` (or `absent`), or the
 * time runs out. Returns how many item-modalities were still not in L1.
 */
export async function warmUntilL1(base: string, items: readonly PredictItem[], context: FieldValues | undefined, o: { timeoutMs: number; chunk?: number; pauseMs?: number }): Promise<WarmResult> {
  const t0 = performance.now()
  const chunk = o.chunk ?? 100
  let pending = [...items]
  let rounds = 0
  while (pending.length > 0 && performance.now() - t0 < o.timeoutMs) {
    rounds++
    const still: PredictItem[] = []
    for (let i = 0; i < pending.length; i += chunk) {
      const batch = pending.slice(i, i + chunk)
      const r = await predict(base, { ...(context ? { context } : {}), items: batch, options: { miss_policy: 'oov' } })
      r.predictions.forEach((p, j) => {
        if (Object.values(p.sources).some((s) => s !== 'l1' && s !== 'absent')) still.push(batch[j] as PredictItem)
      })
    }
    pending = still
    if (pending.length > 0) await sleep(o.pauseMs ?? 1000)
  }
  return { rounds, seconds: Math.round((performance.now() - t0) / 100) / 10, notL1: pending.length, total: items.length }
}

/**
 * Writes the vectors of sample item (v-1) % n under the keys of variant v = 1..count (same JPEG,
 * so the image vector is exact; the text vector is the base title's, an approximation that does
 * not change the cost of serving it). Returns the number of variants written.
 */
export async function copyVariantsInRedis(o: {
  redisUrl: string; prefix: string; versions: { image: string; text: string }; sample: Sample; originBase: string; count: number; ttlSeconds: number
}): Promise<number> {
  const redis = new Redis(o.redisUrl, { maxRetriesPerRequest: 1 })
  try {
    const n = o.sample.items.length
    const baseVectors: Array<[Buffer | null, Buffer | null]> = []
    for (let i = 0; i < n; i += 500) {
      const items = o.sample.items.slice(i, i + 500).map((it) => itemVariant(it, 0, o.originBase))
      const keys = items.flatMap((it) => [
        embeddingKey(o.prefix, 'image', o.versions.image, it.image_url ?? ''), embeddingKey(o.prefix, 'text', o.versions.text, it.title ?? ''),
      ])
      const vals = await redis.mgetBuffer(keys)
      for (let j = 0; j < items.length; j++) baseVectors.push([vals[2 * j] ?? null, vals[2 * j + 1] ?? null])
    }
    let written = 0
    for (let v = 1; v <= o.count; v += 1000) {
      const p = redis.pipeline()
      for (let w = v; w < Math.min(v + 1000, o.count + 1); w++) {
        const bi = (w - 1) % n
        const it = itemVariant(o.sample.items[bi] as PredictItem, w, o.originBase)
        const [img, txt] = baseVectors[bi] ?? [null, null]
        if (!img || !txt) continue
        p.set(embeddingKey(o.prefix, 'image', o.versions.image, it.image_url ?? ''), img, 'EX', o.ttlSeconds)
        p.set(embeddingKey(o.prefix, 'text', o.versions.text, it.title ?? ''), txt, 'EX', o.ttlSeconds)
        written++
      }
      await p.exec()
    }
    return written
  } finally {
    redis.disconnect()
  }
}

/**
 * Deletes the durable embedding queue under `prefix` (`<prefix>:q:*`: every partition's waiting, delayed and
 * leased jobs, their records and negative markers). A scenario that ended with a backlog (e.g. an overload phase) would otherwise
 * hand it to the next server on the same prefix, which embeds it during that scenario's measurement.
 * Returns the number of keys deleted and the jobs that were still queued.
 */
export async function resetQueue(redisUrl: string, prefix: string): Promise<{ keys: number; streamJobs: number }> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
  try {
    let streamJobs = 0
    for (const key of await redis.keys(partitionKeyPattern(prefix, 'jobs')).catch(() => [])) streamJobs += await redis.hlen(key).catch(() => 0)
    let cursor = '0'
    let keys = 0
    for (let i = 0; i < 100_000; i++) {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}:q:*`, 'COUNT', 1000)
      if (batch.length > 0) keys += await redis.unlink(...batch)
      cursor = next
      if (cursor === '0') break
    }
    return { keys, streamJobs }
  } finally {
    redis.disconnect()
  }
}
