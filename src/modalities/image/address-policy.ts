import ipaddr from 'ipaddr.js'
import { CtrError } from '../../errors.ts'

// Which hosts and IP addresses an image fetch may contact. Pure functions: no DNS, no I/O.
// Default deny: only global unicast space passes; IMAGE_ALLOWED_HOSTS lists the exceptions.

export type Decision = { readonly allowed: true } | { readonly allowed: false; readonly reason: string }

type Address = ipaddr.IPv4 | ipaddr.IPv6
type Cidr = readonly [Address, number]

export interface AddressPolicy {
  /** Lower-case host names without a trailing dot. */
  readonly allowedNames: ReadonlySet<string>
  readonly allowedRanges: readonly Cidr[]
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

/** `entries`: host names, IP addresses or CIDR ranges (IMAGE_ALLOWED_HOSTS, split on commas). */
export function createAddressPolicy(entries: readonly string[]): AddressPolicy {
  const allowedNames = new Set<string>()
  const allowedRanges: Cidr[] = []
  for (const raw of entries) {
    const entry = raw.trim()
    if (entry === '') continue
    if (ipaddr.isValidCIDR(entry)) {
      allowedRanges.push(ipaddr.parseCIDR(entry))
      continue
    }
    const addr = parseAddress(entry)
    if (addr !== undefined) {
      const one = canonical(addr)
      allowedRanges.push([one, one.kind() === 'ipv4' ? 32 : 128])
      continue
    }
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$/i.test(entry)) {
      throw new CtrError('BAD_CONFIG', ['IMAGE_ALLOWED_HOSTS', `"${entry}" is not a host name, IP address or CIDR range`])
    }
    allowedNames.add(normaliseName(entry))
  }
  return { allowedNames, allowedRanges }
}

export function isAllowedName(name: string, policy: AddressPolicy): boolean {
  return policy.allowedNames.has(normaliseName(name))
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
  | { readonly allowed: true; readonly url: URL; readonly hostname: string; readonly isIp: boolean }
  | { readonly allowed: false; readonly reason: string }

/**
 * URL-level check, before any DNS: scheme, credentials, port, length, and literal IP hosts.
 * WHATWG parsing turns every IPv4 notation (2130706433, 0x7f.1, 0177.0.0.1, 127.1) into dotted decimal.
 */
export function checkUrl(input: string | URL, policy: AddressPolicy, maxLength = DEFAULT_MAX_URL_LENGTH): UrlDecision {
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
  const isIp = parseAddress(hostname) !== undefined
  if (isIp) {
    const decision = checkAddress(hostname, policy)
    if (!decision.allowed) return { allowed: false, reason: `${hostname} ${decision.reason}` }
  }
  return { allowed: true, url, hostname: isIp ? hostname.replace(/^\[|\]$/g, '') : hostname, isIp }
}
