import { writeFile } from 'node:fs/promises'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Config } from '../config.ts'
import { configPlugin } from '../plugins/index.ts'

// Small helpers the operator commands share: option parsing, a stderr logger, waiting for Redis.

export class UsageError extends Error {}

export function intOption(name: string, value: string | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be a whole number ≥ ${min} (got ${JSON.stringify(value)})`)
  return n
}

export function rateOption(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new UsageError(`--${name} must be a number in [0, 1] (got ${JSON.stringify(value)})`)
  return n
}

export interface Shard { readonly index: number; readonly count: number }

/** `i/n` with 0 ≤ i < n: the rows whose index % n == i. */
export function parseShard(value: string | undefined): Shard {
  if (value === undefined) return { index: 0, count: 1 }
  const m = /^(\d+)\/(\d+)$/.exec(value)
  const index = Number(m?.[1])
  const count = Number(m?.[2])
  if (!m || count < 1 || index >= count) throw new UsageError(`--shard must be i/n with 0 ≤ i < n (got ${JSON.stringify(value)})`)
  return { index, count }
}

/** A log call as the plugins make it: (object, message) or (message). */
function lineWriter(level: string): (a: unknown, b?: unknown) => void {
  return (a, b) => {
    const [o, m] = typeof a === 'string' ? [{}, a] : [a ?? {}, typeof b === 'string' ? b : '']
    const extra = typeof o === 'object' && Object.keys(o).length > 0 ? ` ${JSON.stringify(o)}` : ''
    process.stderr.write(`${level}: ${m}${extra}\n`)
  }
}

/** A command's logger: warnings and errors as plain lines on stderr; info with --verbose. */
export function stderrLogger(verbose: boolean): FastifyBaseLogger {
  const quiet = (): void => undefined
  const logger: FastifyBaseLogger = {
    level: verbose ? 'info' : 'warn',
    fatal: lineWriter('fatal'), error: lineWriter('error'), warn: lineWriter('warn'),
    info: verbose ? lineWriter('info') : quiet, debug: quiet, trace: quiet, silent: quiet,
    child: () => logger,
  }
  return logger
}

/**
 * A fastify app that never listens, for a command to register the plugins it needs on (config
 * already registered). The caller closes it; each plugin closes its resource.
 */
export async function offlineApp(config: Config, log: FastifyBaseLogger): Promise<FastifyInstance> {
  const app = Fastify({ loggerInstance: log, pluginTimeout: 120_000 })
  await app.register(configPlugin, { config })
  return app
}

/** What waitForRedis needs of a Redis or Redis Cluster client. */
interface ReadyEvents {
  readonly status: string
  once(event: 'ready', listener: () => void): unknown
  off(event: 'ready', listener: () => void): unknown
}

/** Resolves when the client is ready; throws a message naming the URL after `timeoutMs`. */
export async function waitForRedis(redis: ReadyEvents, url: string, timeoutMs = 10_000): Promise<void> {
  if (redis.status === 'ready') return
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady)
      reject(new Error(`Redis at ${redactUrl(url)} is not reachable after ${timeoutMs} ms (status ${redis.status}); check --redis / REDIS_URL / REDIS_CLUSTER_NODES`))
    }, timeoutMs)
    const onReady = (): void => { clearTimeout(timer); resolve() }
    redis.once('ready', onReady)
  })
}

export function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@')
}

export async function writeJson(path: string | undefined, value: unknown): Promise<void> {
  if (path) await writeFile(path, `${JSON.stringify(value, null, 2)}\n`)
}

export function pct(part: number, whole: number): string {
  return whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '-'
}
