import { createHash } from 'node:crypto'

/** What running a script needs of a connection; an ioredis `Redis` and a `Cluster` both have it. */
export interface RedisCaller {
  call(command: string, ...args: Array<string | number>): Promise<unknown>
}

/** A non-transactional pipeline (WAIT does not block inside MULTI, so it must not be one). */
export interface ScriptPipeline {
  call(command: string, ...args: Array<string | number>): ScriptPipeline
  exec(): Promise<Array<[Error | null, unknown]> | null>
}

/** A connection that can pipeline; on a Cluster, keyless commands go with the keyed ones to one node. */
export interface PipelineCaller {
  pipeline(): ScriptPipeline
}

/** A Lua script run by EVALSHA, falling back to EVAL once when Redis lost its script cache (restart). */
export class LuaScript {
  readonly sha: string

  constructor(readonly name: string, readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex')
  }

  async run(redis: RedisCaller, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await redis.call('EVALSHA', this.sha, keys.length, ...keys, ...args)
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err
      return redis.call('EVAL', this.source, keys.length, ...keys, ...args)
    }
  }

  /**
   * Runs the script, then waits until `replicas` replicas of the node that ran it acknowledged it
   * (fewer when fewer are connected: a master left without replicas, e.g. after a failover, or a
   * single Redis, acknowledges alone, as Redis itself does, rather than stall every call for the
   * timeout). Two pipelines on the script's node and connection (WAIT counts that connection's
   * writes; not MULTI, where WAIT does not block): the script with ROLE, then a keyed no-op with
   * WAIT when replicas are connected. Resolves with the reply, the replicas asked for and those
   * that acknowledged; rejects when the script failed.
   */
  async runAndWait(redis: PipelineCaller, keys: readonly string[], args: readonly (string | number)[],
    replicas: number, timeoutMs: number): Promise<{ reply: unknown; wanted: number; acked: number }> {
    const exec = async (command: 'EVALSHA' | 'EVAL', body: string): Promise<Array<[Error | null, unknown]>> =>
      await redis.pipeline().call(command, body, keys.length, ...keys, ...args).call('ROLE').exec() ?? []
    let replies = await exec('EVALSHA', this.sha)
    if (replies[0]?.[0]?.message.startsWith('NOSCRIPT')) replies = await exec('EVAL', this.source)
    const [script, role] = replies
    if (!script) throw new Error('pipeline discarded')
    if (script[0]) throw script[0]
    const connected = role && !role[0] && Array.isArray(role[1]) && Array.isArray(role[1][2]) ? role[1][2].length : replicas
    const wanted = Math.min(replicas, connected)
    if (wanted === 0) return { reply: script[1], wanted, acked: 0 }
    const [, wait] = await redis.pipeline().call('EXISTS', keys[0] ?? '').call('WAIT', wanted, timeoutMs).exec() ?? []
    return { reply: script[1], wanted, acked: wait && !wait[0] ? Number(wait[1]) : 0 }
  }
}
