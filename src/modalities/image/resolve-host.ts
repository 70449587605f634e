import { promises as dns, type LookupAddress } from 'node:dns'
import { readFileSync } from 'node:fs'

// Name resolution for image fetches without libuv's thread pool. `dns.lookup` (getaddrinfo) runs
// on that 4-thread pool, which sharp and file I/O share: four deliberately slow DNS answers would
// stall image decoding and snapshots process-wide. c-ares (`dns.Resolver`) runs on the event loop
// and has its own timeout. It does not read /etc/hosts, so that file is consulted first, as
// getaddrinfo would.

export type ResolveHost = (hostname: string) => Promise<readonly LookupAddress[]>

export interface ResolveHostOptions {
  /** Per try; the fetch deadline still bounds the whole fetch. */
  readonly timeoutMs: number
  readonly tries?: number
  /** DNS servers (`ip` or `ip:port`); the system's by default. Tests point this at a local server. */
  readonly servers?: readonly string[]
  readonly hostsFile?: string
}

/** /etc/hosts as name → addresses (lower-case names); a missing file is an empty table. */
export function readHostsFile(path: string): ReadonlyMap<string, readonly LookupAddress[]> {
  const table = new Map<string, LookupAddress[]>()
  let text = ''
  try {
    text = readFileSync(path, 'utf8')
  } catch {
    return table // no hosts file: DNS only
  }
  for (const line of text.split('\n')) {
    const [address, ...names] = (line.split('#')[0] ?? '').trim().split(/\s+/)
    if (!address || names.length === 0) continue
    const family = address.includes(':') ? 6 : 4
    for (const name of names) {
      const key = name.toLowerCase()
      table.set(key, [...(table.get(key) ?? []), { address, family }])
    }
  }
  return table
}

const NO_ANSWER = new Set(['ENODATA', 'ENOTFOUND', 'NOTFOUND', 'ENONAME'])

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code
}

/** A and AAAA in parallel; the name is unknown only when both say so, any other failure is passed on. */
export function createHostResolver(options: ResolveHostOptions): ResolveHost {
  const resolver = new dns.Resolver({ timeout: options.timeoutMs, tries: options.tries ?? 2 })
  if (options.servers) resolver.setServers([...options.servers])
  const hosts = readHostsFile(options.hostsFile ?? '/etc/hosts')
  return async (hostname) => {
    const name = hostname.toLowerCase().replace(/\.$/, '')
    const listed = hosts.get(name)
    if (listed) return listed
    const [v4, v6] = await Promise.allSettled([resolver.resolve4(name), resolver.resolve6(name)])
    const found: LookupAddress[] = [
      ...(v4.status === 'fulfilled' ? v4.value.map((address) => ({ address, family: 4 })) : []),
      ...(v6.status === 'fulfilled' ? v6.value.map((address) => ({ address, family: 6 })) : []),
    ]
    if (found.length > 0) return found
    const failure = [v4, v6].find((r): r is PromiseRejectedResult => r.status === 'rejected' && !NO_ANSWER.has(code(r.reason) ?? ''))
    if (failure) throw failure.reason
    throw Object.assign(new Error(`${name}: no address`), { code: 'ENOTFOUND' })
  }
}
