import Fastify from 'fastify'
import app from './app.ts'
import { loadConfig } from './config.ts'
import { serverOptions } from './server-options.ts'
import { warmUpRequestPath } from './predict/warm-up.ts'

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
  armShutdownDeadline()
  try {
    await server.close()
    process.exit(0)
  } catch (err) {
    server.log.error({ err }, 'error while closing')
    process.exit(1)
  }
}
// An orchestrator kills the process at the end of its grace period (30 s by default), whatever is
// still running: requests with a long budget (up to 60 s) must not hold the process that long. At
// 80% of SHUTDOWN_TIMEOUT_MS the L1 snapshot (with the queue's unfinished jobs) is written while
// requests may still run; at 100% the process exits whether or not the snapshot finished.
function armShutdownDeadline(): void {
  const total = config.SHUTDOWN_TIMEOUT_MS
  const give = (code: number, why: string): void => {
    server.log.error({ timeoutMs: total }, why)
    process.exit(code)
  }
  setTimeout(() => {
    server.log.warn({ timeoutMs: total }, 'shutdown deadline near: writing the L1 snapshot, then exiting')
    server.snapshots.save().then(
      () => give(1, 'shutdown deadline: exited with requests still in flight'),
      (err: unknown) => give(1, `shutdown deadline: snapshot failed: ${String(err)}`),
    )
  }, Math.floor(total * 0.8)).unref()
  setTimeout(() => give(1, 'shutdown deadline: exited before the snapshot finished'), total).unref()
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
  await server.ready()
  // WARM_UP_REQUESTS synthetic requests, quietly, before the port opens (src/predict/warm-up.ts; 200 by default).
  const warm = await warmUpRequestPath(server, config.WARM_UP_REQUESTS, 2 * config.WEB_CONCURRENCY)
  if (warm.requests > 0) server.log.info(warm, 'request path warmed up')
  await server.listen({ port: config.PORT, host: config.HOST })
} catch (err) {
  server.log.fatal({ err }, 'cannot start')
  process.exit(1)
}
