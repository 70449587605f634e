import ipaddr from 'ipaddr.js'
import { CtrError } from '../../errors.ts'

// Which hosts and IP addresses an image fetch may contact. Pure functions: no DNS, no I/O.
// Default deny: only global unicast space passes; IMAGE_ALLOWED_HOSTS lists the exceptions.

export type Decision = { readonly allowed: true } | { readonly allowed: false; readonly reason: string }

type Address = ipaddr.IPv4 | ipaddr.IPv6
type Cidr = readonly [Address, number]

/** One IMAGE_ALLOWED_HOSTS entry: a name or an address range, on one port or on any ordinary port. */
interface AllowEntry {
  /** Lower-case host name without a trailing dot. */
  readonly name?: string
  readonly range?: Cidr
  readonly port?: number
}

/** The configured exemptions (IMAGE_ALLOWED_HOSTS); narrowed to one port by `policyForPort`. */
export interface AllowList {
  readonly entries: readonly AllowEntry[]
}

/** The exemptions that apply to a connection on one port. */
export interface AddressPolicy {
  /** Lower-case host names without a trailing dot. */
  readonly allowedNames: ReadonlySet<string>
  readonly allowedRanges: readonly Cidr[]
  /** Which entries apply ('' = none): equal keys mean equal policies, so connection pools can be shared. */
  readonly key: string
}

export const DEFAULT_MAX_URL_LENGTH = 2048

const ALLOWED: Decision = { allowed: true }
const refuse = (reason: string): Decision => ({ allowed: false, reason })

const cidr = (text: string): Cidr => ipaddr.parseCIDR(text)

// Checked before ipaddr.js's own range() so that reasons are specific; order matters (first match wins).
const IPV4_BLOCKS: readonly (readonly [Cidr, string])[] = [
  [cidr('0.0.0.0/8'), 'unspecified'],
  [cidr('10.0.0.0/8'), 'private'],
  [cidr('100.64.0.0/10'), 'cgnat'],
  [cidr('127.0.0.0/8'), 'loopback'],
  [cidr('169.254.0.0/16'), 'link-local'],
  [cidr('172.16.0.0/12'), 'private'],
  [cidr('192.0.0.0/24'), 'ietf-protocol'],
  [cidr('192.0.2.0/24'), 'documentation'],
  [cidr('192.88.99.0/24'), '6to4-relay'],
  [cidr('192.168.0.0/16'), 'private'],
  [cidr('198.18.0.0/15'), 'benchmarking'],
  [cidr('198.51.100.0/24'), 'documentation'],
  [cidr('203.0.113.0/24'), 'documentation'],
  [cidr('224.0.0.0/4'), 'multicast'],
  [cidr('255.255.255.255/32'), 'broadcast'],
  [cidr('240.0.0.0/4'), 'reserved'],
]

const IPV6_BLOCKS: readonly (readonly [Cidr, string])[] = [
  [cidr('::/128'), 'unspecified'],
  [cidr('::1/128'), 'loopback'],
  [cidr('fe80::/10'), 'link-local'],
  [cidr('fec0::/10'), 'site-local'],
  [cidr('fc00::/7'), 'unique-local'],
  [cidr('ff00::/8'), 'multicast'],
  [cidr('100::/64'), 'discard'],
  [cidr('64:ff9b:1::/48'), 'nat64-local'],
  [cidr('2001:2::/48'), 'benchmarking'],
  [cidr('2001:db8::/32'), 'documentation'],
  [cidr('3fff::/20'), 'documentation'],
]

const GLOBAL_UNICAST_V6 = cidr('2000::/3')
const IPV4_MAPPED = cidr('::ffff:0:0/96')
const IPV4_TRANSLATED = cidr('::ffff:0:0:0/96')
const NAT64 = cidr('64:ff9b::/96')
const IPV4_COMPATIBLE = cidr('::/96')
const SIX_TO_FOUR = cidr('2002::/16')
const TEREDO = cidr('2001::/32')

// Fetch-spec "bad ports": protocols a GET could be smuggled into (SMTP, IRC, …).
const BAD_PORTS: ReadonlySet<number> = new Set([
  1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109,
  110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530,
  531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190,
  5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
])

// Services that answer a plain HTTP GET (or can be driven by one) and usually sit next to an image
// origin on internal hosts: an exempted host is not exempt on these unless the entry names the port.
export const INTERNAL_SERVICE_PORTS: ReadonlySet<number> = new Set([
  2375, 2376, // Docker API
  2379, 2380, // etcd
  3306, 5432, 27017, 5984, 9200, 9300, 8086, // MySQL, PostgreSQL, MongoDB, CouchDB, Elasticsearch, InfluxDB
  4369, 5672, 15672, 9092, 2181, // Erlang epmd, RabbitMQ, Kafka, ZooKeeper
  6379, 6380, 26379, 11211, // Redis, Redis Sentinel, memcached
  6443, 10250, 10255, 8500, 8200, // Kubernetes API, kubelet, Consul, Vault
  9229, 9222, // Node inspector, Chrome DevTools
])

function inCidr(addr: Address, [range, bits]: Cidr): boolean {
  return addr.kind() === range.kind() && addr.match(range, bits)
}

function firstBlock(addr: Address, blocks: readonly (readonly [Cidr, string])[]): string | undefined {
  return blocks.find(([block]) => inCidr(addr, block))?.[1]
}

function v4FromBytes(bytes: readonly number[]): ipaddr.IPv4 {
  return new ipaddr.IPv4(bytes.map((b) => b & 0xff))
}

function decideIPv4(addr: ipaddr.IPv4): Decision {
  const blocked = firstBlock(addr, IPV4_BLOCKS)
  if (blocked !== undefined) return refuse(blocked)
  const range = addr.range()
  return range === 'unicast' ? ALLOWED : refuse(range)
}

function embedded(kind: string, v4: ipaddr.IPv4): Decision {
  const inner = decideIPv4(v4)
  return inner.allowed ? ALLOWED : refuse(`${kind}:${inner.reason}`)
}

function decideIPv6(addr: ipaddr.IPv6): Decision {
  const bytes = addr.toByteArray()
  // Addresses that carry an IPv4 address reach (or are translated to) that IPv4 host.
  if (inCidr(addr, IPV4_MAPPED)) return embedded('ipv4-mapped', v4FromBytes(bytes.slice(12)))
  if (inCidr(addr, IPV4_TRANSLATED)) return embedded('ipv4-translated', v4FromBytes(bytes.slice(12)))
  if (inCidr(addr, NAT64)) return embedded('nat64', v4FromBytes(bytes.slice(12)))
  const blocked = firstBlock(addr, IPV6_BLOCKS)
  if (blocked !== undefined) return refuse(blocked)
  // Deprecated by RFC 4291; no legitimate origin uses them, so refuse rather than decode.
  if (inCidr(addr, IPV4_COMPATIBLE)) return refuse('ipv4-compatible')
  if (inCidr(addr, SIX_TO_FOUR)) return embedded('6to4', v4FromBytes(bytes.slice(2, 6)))
  if (inCidr(addr, TEREDO)) {
    const server = embedded('teredo-server', v4FromBytes(bytes.slice(4, 8)))
    if (!server.allowed) return server
    return embedded('teredo-client', v4FromBytes(bytes.slice(12).map((b) => ~b)))
  }
  if (!inCidr(addr, GLOBAL_UNICAST_V6)) return refuse('reserved')
  const range = addr.range()
  return range === 'unicast' ? ALLOWED : refuse(range)
}

function parseAddress(text: string): Address | undefined {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text
  if (!ipaddr.isValid(bare)) return undefined
  return ipaddr.parse(bare)
}

/** IPv4-mapped IPv6 is the same destination as its IPv4 address, so the allow list treats them alike. */
function canonical(addr: Address): Address {
  return addr instanceof ipaddr.IPv6 && addr.isIPv4MappedAddress() ? addr.toIPv4Address() : addr
}

function normaliseName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '')
}

const HOST_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$/i

function badEntry(entry: string, why: string): CtrError {
  return new CtrError('BAD_CONFIG', ['IMAGE_ALLOWED_HOSTS', `"${entry}" ${why}`])
}

/** Splits `host:port`, `1.2.3.4:port`, `10.0.0.0/8:port`, `[v6]:port` and `[v6/cidr]:port`; bare IPv6 has no port. */
function splitPort(entry: string): { host: string; port?: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry)
  const match = bracketed ?? (entry.split(':').length === 2 ? /^([^:]+):(\d+)$/.exec(entry) : null)
  if (!match) return { host: entry }
  const host = match[1] as string
  if (match[2] === undefined) return { host }
  const port = Number(match[2])
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw badEntry(entry, 'has a port outside 1–65535')
  return { host, port }
}

function parseEntry(entry: string): AllowEntry {
  const { host, port } = splitPort(entry)
  const at = port === undefined ? {} : { port }
  if (ipaddr.isValidCIDR(host)) return { range: ipaddr.parseCIDR(host), ...at }
  const addr = parseAddress(host)
  if (addr !== undefined) {
    const one = canonical(addr)
    return { range: [one, one.kind() === 'ipv4' ? 32 : 128], ...at }
  }
  if (!HOST_NAME.test(host)) throw badEntry(entry, 'is not a host name, IP address or CIDR range (optionally with :port)')
  return { name: normaliseName(host), ...at }
}

/** `entries`: host names, IP addresses or CIDR ranges, each optionally `:port` (IMAGE_ALLOWED_HOSTS, split on commas). */
export function createAllowList(entries: readonly string[]): AllowList {
  return { entries: entries.map((e) => e.trim()).filter((e) => e !== '').map(parseEntry) }
}

/**
 * The exemptions for a connection on `port`: entries naming that port, and entries without a port
 * unless `port` is an internal service port (those must be named explicitly).
 */
export function policyForPort(list: AllowList, port: number): AddressPolicy {
  const allowedNames = new Set<string>()
  const allowedRanges: Cidr[] = []
  const used: number[] = []
  list.entries.forEach((e, i) => {
    const applies = e.port === undefined ? !INTERNAL_SERVICE_PORTS.has(port) : e.port === port
    if (!applies) return
    used.push(i)
    if (e.name !== undefined) allowedNames.add(e.name)
    if (e.range !== undefined) allowedRanges.push(e.range)
  })
  return { allowedNames, allowedRanges, key: used.join(',') }
}

/** No exemptions at all: what redirects from a host that is not itself exempt are judged by. */
export const STRICT_POLICY: AddressPolicy = { allowedNames: new Set(), allowedRanges: [], key: '' }

export function isAllowedName(name: string, policy: AddressPolicy): boolean {
  return policy.allowedNames.has(normaliseName(name))
}

/** Is this URL host itself named by the (port-narrowed) policy, as a name or a literal IP in a range? */
export function isExemptHost(hostname: string, policy: AddressPolicy): boolean {
  const addr = parseAddress(hostname)
  if (addr === undefined) return isAllowedName(hostname, policy)
  const one = canonical(addr)
  return policy.allowedRanges.some((range) => inCidr(one, range))
}

/** May this IP address be contacted? Accepts any notation ipaddr.js parses (as inet_aton would). */
export function checkAddress(text: string, policy: AddressPolicy): Decision {
  const parsed = parseAddress(text)
  if (parsed === undefined) return refuse('not-an-ip')
  const addr = canonical(parsed)
  if (policy.allowedRanges.some((range) => inCidr(addr, range))) return ALLOWED
  return parsed instanceof ipaddr.IPv4 ? decideIPv4(parsed) : decideIPv6(parsed)
}

/** Every address a name resolves to must pass, or a rebinding answer could pick the internal one. */
export function checkResolved(name: string, addresses: readonly string[], policy: AddressPolicy): Decision {
  if (isAllowedName(name, policy)) return ALLOWED
  if (addresses.length === 0) return refuse('no-address')
  for (const address of addresses) {
    const decision = checkAddress(address, policy)
    if (!decision.allowed) return refuse(`${address} ${decision.reason}`)
  }
  return ALLOWED
}

export type UrlDecision =
  | {
    readonly allowed: true; readonly url: URL; readonly hostname: string; readonly isIp: boolean
    /** The port connected to (default 80/443 filled in) and the exemptions that apply on it. */
    readonly port: number; readonly policy: AddressPolicy
  }
  | { readonly allowed: false; readonly reason: string }

/**
 * URL-level check, before any DNS: scheme, credentials, port, length, and literal IP hosts.
 * WHATWG parsing turns every IPv4 notation (2130706433, 0x7f.1, 0177.0.0.1, 127.1) into dotted decimal.
 */
export function checkUrl(input: string | URL, list: AllowList | AddressPolicy, maxLength = DEFAULT_MAX_URL_LENGTH): UrlDecision {
  const text = typeof input === 'string' ? input : input.href
  if (text.length > maxLength) return { allowed: false, reason: `url-too-long (> ${maxLength})` }
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return { allowed: false, reason: 'url-invalid' }
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { allowed: false, reason: `scheme ${url.protocol}` }
  if (url.username !== '' || url.password !== '') return { allowed: false, reason: 'credentials' }
  if (url.port !== '') {
    const port = Number(url.port)
    if (port < 1 || port > 65535 || BAD_PORTS.has(port)) return { allowed: false, reason: `bad-port ${url.port}` }
  }
  const hostname = url.hostname
  if (hostname === '') return { allowed: false, reason: 'no-host' }
  const port = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80
  // An already narrowed policy (a redirect hop judged strictly) is used as it is.
  const policy = 'entries' in list ? policyForPort(list, port) : list
  const isIp = parseAddress(hostname) !== undefined
  if (isIp) {
    const decision = checkAddress(hostname, policy)
    if (!decision.allowed) return { allowed: false, reason: `${hostname} ${decision.reason}` }
  }
  return { allowed: true, url, hostname: isIp ? hostname.replace(/^\[|\]$/g, '') : hostname, isIp, port, policy }
}

export type RedirectDecision =
  | { readonly allowed: true; readonly target: string; readonly judgedBy: AllowList | AddressPolicy }
  | { readonly allowed: false; readonly reason: string }

/**
 * May a fetch follow `location` from the hop `from`, and by which exemptions is the target judged?
 * Exemptions hold for the caller's URL and for redirects from an exempt host; after a hop through
 * any other origin the chain is judged without them, so a public origin cannot bounce a fetch into
 * an internal one. A downgrade from https to http is refused (the body could be swapped on the way).
 */
export function checkRedirect(
  from: Extract<UrlDecision, { allowed: true }>, location: string, judgedBy: AllowList | AddressPolicy,
): RedirectDecision {
  if (!URL.canParse(location, from.url)) return { allowed: false, reason: 'redirect-invalid' }
  const next = new URL(location, from.url)
  if (from.url.protocol === 'https:' && next.protocol === 'http:') return { allowed: false, reason: 'redirect from https to http' }
  return { allowed: true, target: next.href, judgedBy: isExemptHost(from.hostname, from.policy) ? judgedBy : STRICT_POLICY }
}
