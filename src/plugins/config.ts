import fp from 'fastify-plugin'
import type { Config } from '../config.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The validated configuration (src/config.ts); read by every other plugin. */
    config: Config
  }
}

export interface ConfigPluginOptions {
  readonly config: Config
}

/** The configuration, loaded and validated by the caller (server, tests, CLI), as a decorator. */
export default fp<ConfigPluginOptions>(async (app, opts) => {
  app.decorate('config', opts.config)
}, { name: 'config' })
