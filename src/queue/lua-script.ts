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
   * Runs the script, then `WAIT replicas timeoutMs` in the same pipeline: same connection, same
   * node (the script's slot), right after the write, which is what WAIT counts. Resolves with the
   * script's reply and how many replicas acknowledged it; rejects when the script failed.
   */
  async runAndWait(redis: PipelineCaller, keys: readonly string[], args: readonly (string | number)[],
    replicas: number, timeoutMs: number): Promise<{ reply: unknown; acked: number }> {
    const exec = async (command: 'EVALSHA' | 'EVAL', body: string): Promise<Array<[Error | null, unknown]>> =>
      await redis.pipeline().call(command, body, keys.length, ...keys, ...args).call('WAIT', replicas, timeoutMs).exec() ?? []
    let replies = await exec('EVALSHA', this.sha)
    if (replies[0]?.[0]?.message.startsWith('NOSCRIPT')) replies = await exec('EVAL', this.source)
    const [script, wait] = replies
    if (!script) throw new Error('pipeline discarded')
    if (script[0]) throw script[0]
    return { reply: script[1], acked: wait && !wait[0] ? Number(wait[1]) : 0 }
  }
}
