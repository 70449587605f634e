import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createServer } from 'node:net'
import { Cluster, Redis } from 'ioredis'
import { freePort } from './free-port.ts'

// A real Redis Cluster on loopback for tests and the fleet bench: `masters` masters with
// `replicasPerMaster` replicas each, joined by `redis-cli --cluster create` (DESIGN.md "Fleet mode").
// A cluster node also listens on its bus port (port + 10000), so every port is ≤ 55535 and both
// the port and its bus port are free.

export interface ClusterNode {
  readonly port: number
  readonly dir: string
  /** Kill the process (SIGKILL); `start()` brings it back on the same port with its nodes.conf and AOF. */
  kill(): Promise<void>
  start(): Promise<void>
  /** SIGSTOP (the node hangs: it answers nothing, acknowledges no replication) or SIGCONT. */
  signal(sig: 'SIGSTOP' | 'SIGCONT'): void
  /** The node's role as it reports it now ('master' | 'slave'), or 'down'. */
  role(): Promise<'master' | 'slave' | 'down'>
}

export interface RedisClusterHandle {
  readonly nodes: readonly ClusterNode[]
  /** Seed list in the form REDIS_CLUSTER_NODES takes: `127.0.0.1:p1,127.0.0.1:p2,…`. */
  readonly seeds: string
  /** A Cluster client on the seeds (caller disconnects it). */
  client(): Cluster
  /** Current masters, by asking a live node for CLUSTER NODES. */
  masters(): Promise<ClusterNode[]>
  /** Resolves when every live node reports cluster_state:ok, all 16384 slots are served and every live replica is in sync. */
  waitHealthy(timeoutMs?: number): Promise<void>
  stop(): Promise<void>
}

const MAX_CLUSTER_PORT = 55_535

async function freeClusterPort(taken: Set<number>): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = await freePort()
    if (port > MAX_CLUSTER_PORT || taken.has(port)) continue
    // The bus port must be free as well; probe it by listening on it briefly.
    if (await portIsFree(port + 10_000)) {
      taken.add(port)
      return port
    }
  }
  throw new Error('no free port ≤ 55535 with a free bus port (port + 10000) after 200 tries')
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer()
    srv.once('error', () => resolve(false))
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)))
  })
}

async function ping(port: number): Promise<Redis | undefined> {
  const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  probe.on('error', () => undefined) // refused while the node starts; callers retry
  try {
    await probe.connect()
    return probe
  } catch {
    probe.disconnect()
    return undefined
  }
}

function startNode(port: number, dir: string): ClusterNode {
  let child: ChildProcess | undefined
  const start = async (): Promise<void> => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
      '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000',
      '--appendonly', 'yes', '--save', '', '--protected-mode', 'no'], { stdio: 'ignore' })
    // Generous: on a loaded 2-core machine a node has been seen to take over 10 s to accept.
    const deadline = Date.now() + 30_000
    for (;;) {
      const probe = await ping(port)
      if (probe) {
        const [, serverDir] = (await probe.call('CONFIG', 'GET', 'dir')) as [string, string]
        probe.disconnect()
        if (serverDir !== dir) throw new Error(`port ${port} is taken by another redis-server (${serverDir})`)
        return
      }
      if (Date.now() > deadline) throw new Error(`cluster node did not start on port ${port}`)
      await sleep(50)
    }
  }
  const kill = async (): Promise<void> => {
    const c = child
    if (!c || c.exitCode !== null || c.signalCode !== null) return
    await new Promise<void>((resolve) => { c.once('exit', () => resolve()); c.kill('SIGKILL') })
  }
  const role = async (): Promise<'master' | 'slave' | 'down'> => {
    const probe = await ping(port)
    if (!probe) return 'down'
    try {
      const reply = (await probe.call('ROLE')) as unknown[]
      return reply[0] === 'master' ? 'master' : 'slave'
    } finally {
      probe.disconnect()
    }
  }
  const signal = (sig: 'SIGSTOP' | 'SIGCONT'): void => { child?.kill(sig) }
  return { port, dir, kill, start, role, signal }
}

/**
 * Starts `masters × (1 + replicasPerMaster)` cluster-enabled redis-servers on free loopback ports
 * and joins them. Defaults: 3 masters, 1 replica each (six processes), as the fleet bench runs.
 */
export async function startRedisCluster(opts: { masters?: number; replicasPerMaster?: number } = {}): Promise<RedisClusterHandle> {
  const masters = opts.masters ?? 3
  const replicas = opts.replicasPerMaster ?? 1
  const taken = new Set<number>()
  const nodes: ClusterNode[] = []
  for (let i = 0; i < masters * (1 + replicas); i++) {
    const port = await freeClusterPort(taken)
    nodes.push(startNode(port, mkdtempSync(join(tmpdir(), `ctrserve-cluster-${port}-`))))
  }
  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.kill()))
    for (const n of nodes) rmSync(n.dir, { recursive: true, force: true })
  }
  // A node that fails to start must not leave the others running.
  const started = await Promise.allSettled(nodes.map((n) => n.start()))
  const failed = started.find((r) => r.status === 'rejected')
  if (failed) {
    await stop()
    throw failed.reason
  }
  const create = spawnSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`),
    '--cluster-replicas', String(replicas), '--cluster-yes'], { encoding: 'utf8', timeout: 60_000 })
  if (create.status !== 0) {
    await stop()
    throw new Error(`redis-cli --cluster create failed (${create.status}): ${create.stderr || create.stdout}`)
  }
  const handle: RedisClusterHandle = {
    nodes,
    seeds: nodes.map((n) => `127.0.0.1:${n.port}`).join(','),
    client: () => new Cluster(nodes.map((n) => ({ host: '127.0.0.1', port: n.port }))),
    masters: async () => {
      const roles = await Promise.all(nodes.map((n) => n.role()))
      return nodes.filter((_, i) => roles[i] === 'master')
    },
    waitHealthy: async (timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        if (await allHealthy(nodes)) return
        if (Date.now() > deadline) throw new Error(`redis cluster not healthy within ${timeoutMs} ms`)
        await sleep(100)
      }
    },
    stop,
  }
  await handle.waitHealthy()
  return handle
}

async function allHealthy(nodes: readonly ClusterNode[]): Promise<boolean> {
  let live = 0
  for (const n of nodes) {
    const probe = await ping(n.port)
    if (!probe) continue
    try {
      const info = String(await probe.call('CLUSTER', 'INFO'))
      if (!info.includes('cluster_state:ok') || !info.includes('cluster_slots_ok:16384')) return false
      // A replica counts once it is in sync: until then WAIT on its master reaches no replica.
      const replication = String(await probe.call('INFO', 'replication'))
      if (replication.includes('role:slave') && !replication.includes('master_link_status:up')) return false
      live++
    } finally {
      probe.disconnect()
    }
  }
  return live > 0
}
