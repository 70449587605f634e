import Fastify from 'fastify'
import app from './app.ts'
import { loadConfig } from './config.ts'
import { serverOptions } from './server-options.ts'

// Thin entry: read the configuration, build the app, listen, close gracefully on a signal.
const config = (() => {
  try {
    return loadConfig()
  } catch (err) {
    process.stderr.write(`ctrserve: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(1)
  }
})()

const server = Fastify(serverOptions(config))

let closing = false
async function shutdown(signal: string): Promise<void> {
  if (closing) return
  closing = true
  server.log.info({ signal }, 'closing: no new connections, finishing in-flight requests')
  try {
    await server.close()
    process.exit(0)
  } catch (err) {
    server.log.error({ err }, 'error while closing')
    process.exit(1)
  }
}
process.on('SIGINT', () => void shutdown('SIGINT'))
process.on('SIGTERM', () => void shutdown('SIGTERM'))

// A response finished after close() began would leave its keep-alive connection open, and close()
// would wait for fastify's 72 s keepAliveTimeout (measured: exit 72 s after SIGTERM). Tell the
// client to close it instead.
server.addHook('onSend', async (_request, reply) => {
  if (closing) void reply.header('connection', 'close')
})

try {
  await server.register(app, { config })
  await server.listen({ port: config.PORT, host: config.HOST })
} catch (err) {
  server.log.fatal({ err }, 'cannot start')
  process.exit(1)
}
