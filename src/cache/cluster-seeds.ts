// REDIS_CLUSTER_NODES: the seed nodes of a Redis Cluster, `host:port[,host:port…]`, optionally
// preceded by a URL scheme and credentials that apply to every node, as REDIS_URL carries them:
// `rediss://user:password@10.0.0.1:6379,10.0.0.2:6379` (TLS, ACL user). Secrets stay in one variable.

export interface ClusterSeeds {
  readonly nodes: ReadonlyArray<{ readonly host: string; readonly port: number }>
  readonly username?: string
  readonly password?: string
  readonly tls: boolean
}

const PREFIX = /^(rediss?):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?/
const NODE = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/

/** Parses the variable; the message of a thrown error says what is wrong (the caller names the variable). */
export function parseClusterSeeds(value: string): ClusterSeeds {
  const prefix = PREFIX.exec(value)
  const rest = prefix ? value.slice(prefix[0].length) : value
  const nodes = rest.split(',').map((s) => s.trim()).map((seed) => {
    const m = NODE.exec(seed)
    const port = Number(m?.[2])
    if (!m || port < 1 || port > 65535) throw new Error(`${JSON.stringify(seed)} is not host:port (expected host:port[,host:port…])`)
    return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port }
  })
  const username = prefix?.[2] ? decodeURIComponent(prefix[2]) : undefined
  const password = prefix?.[3] !== undefined ? decodeURIComponent(prefix[3]) : undefined
  return { nodes, tls: prefix?.[1] === 'rediss', ...(username ? { username } : {}), ...(password !== undefined ? { password } : {}) }
}
