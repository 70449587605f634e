import type { RedisCaller } from './lua-script.ts'

export interface EvictionLog {
  info(o: object, m: string): void
  warn(o: object, m: string): void
}

/**
 * Under an `allkeys-*` maxmemory-policy, Redis may evict the queue's own keys (waiting jobs,
 * leases, dedupe records) as readily as cached vectors: jobs vanish silently. Say so once, at
 * start. Managed Redis often refuses CONFIG: then the check is skipped, at info.
 */
export async function checkEvictionPolicy(redis: RedisCaller, log: EvictionLog): Promise<void> {
  let policy: string
  try {
    const reply = await redis.call('CONFIG', 'GET', 'maxmemory-policy')
    policy = Array.isArray(reply) && typeof reply[1] === 'string' ? reply[1] : 'unknown'
  } catch (err) {
    log.info({ err: err instanceof Error ? err.message : String(err) },
      'queue: could not read Redis maxmemory-policy (CONFIG refused); make sure it is noeviction or volatile-* (README "Durable queue")')
    return
  }
  if (policy.startsWith('allkeys-')) {
    log.warn({ maxmemoryPolicy: policy },
      `queue: Redis maxmemory-policy is ${policy}: under memory pressure Redis may evict queued jobs and their dedupe records, losing jobs silently. Use noeviction, or volatile-lru/volatile-ttl (cache vectors carry a TTL, queue keys do not)`)
  }
}
