import { createHash } from 'node:crypto'

/** What running a script needs of a connection; an ioredis `Redis` and a `Cluster` both have it. */
export interface RedisCaller {
  call(command: string, ...args: Array<string | number>): Promise<unknown>
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
}
