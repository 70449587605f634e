import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { freePort } from './free-port.ts'

export { freePort } from './free-port.ts'

export interface RedisServer {
  readonly port: number
  readonly url: string
  /** Kill the server (SIGKILL); `start()` brings it back on the same port with the same data dir. */
  kill(): Promise<void>
  start(): Promise<void>
  stop(): Promise<void>
}

/** A real redis-server on a free loopback port, with append-only persistence in a temp dir. */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'ctrserve-redis-'))
  let child: ChildProcess | undefined

  const start = async (): Promise<void> => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
      '--appendonly', 'yes', '--save', '', '--protected-mode', 'no'], { stdio: 'ignore' })
    const deadline = Date.now() + 10_000
    for (;;) {
      const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
      probe.on('error', () => undefined) // refused while the server starts; the loop retries
      try {
        await probe.connect()
        // freePort() can race with another process: make sure the server answering is ours.
        const [, serverDir] = (await probe.call('CONFIG', 'GET', 'dir')) as [string, string]
        probe.disconnect()
        if (serverDir !== dir) throw new Error(`port ${port} is taken by another redis-server (${serverDir})`)
        return
      } catch (err) {
        probe.disconnect()
        if (Date.now() > deadline) throw new Error(`redis-server did not start on port ${port}: ${String(err)}`)
        await sleep(50)
      }
    }
  }
  const kill = async (): Promise<void> => {
    const c = child
    if (!c || c.exitCode !== null || c.signalCode !== null) return
    await new Promise<void>((resolve) => { c.once('exit', () => resolve()); c.kill('SIGKILL') })
  }
  await start()
  return {
    port, url: `redis://127.0.0.1:${port}`, kill, start,
    stop: async () => { await kill(); rmSync(dir, { recursive: true, force: true }) },
  }
}

/** Resolve once an ioredis client is connected and ready (5 s at most). */
export async function waitReady(client: Redis): Promise<void> {
  const until = Date.now() + 5000
  while (client.status !== 'ready') {
    if (Date.now() > until) throw new Error(`redis client not ready (${client.status})`)
    await sleep(10)
  }
}
