import Fastify, { type FastifyInstance } from 'fastify'
import type { TestContext } from 'node:test'
import app from '../src/app.ts'
import { type Config, loadConfig } from '../src/config.ts'
import { serverOptions } from '../src/server-options.ts'
import { BUNDLE_DIR } from './bundle.ts'

export type Overrides = Partial<Record<keyof Config, string | number>>

/** Build the real app on the real bundle (no listen); closed when the test ends. */
export async function build(t: TestContext | undefined, overrides: Overrides = {}): Promise<FastifyInstance> {
  const config = loadConfig({ MODEL_DIR: BUNDLE_DIR, LOG_LEVEL: 'silent', IMAGE_ALLOWED_HOSTS: '127.0.0.1', ...overrides }, {})
  const server = Fastify(serverOptions(config))
  await server.register(app, { config })
  await server.ready()
  t?.after(() => server.close())
  return server
}

/** Poll `fn` until it returns a value or `timeoutMs` passes. */
export async function waitFor<T>(fn: () => Promise<T | undefined>, timeoutMs = 20_000, everyMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}
