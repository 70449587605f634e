import type { LookupAddress, LookupOptions } from 'node:dns'
import { isIP, type LookupFunction } from 'node:net'
import { Agent, buildConnector, errors as undiciErrors, request, type Dispatcher } from 'undici'
import { CtrError } from '../../errors.ts'
import {
  DEFAULT_MAX_URL_LENGTH, checkAddress, checkRedirect, checkResolved, checkUrl, createAllowList,
  type AddressPolicy, type AllowList,
} from './address-policy.ts'
import { createHostResolver } from './resolve-host.ts'

export interface ImageFetchOptions {
  /** Upper bound for one fetch, redirects included; the caller's deadline may end it sooner. */
  readonly timeoutMs: number
  readonly maxBytes: number
  readonly maxRedirects: number
  /** Host names, IPs or CIDR ranges, optionally `:port`, exempt from the address policy (IMAGE_ALLOWED_HOSTS). */
  readonly allowedHosts: readonly string[]
  readonly maxUrlLength?: number
  /** Name resolution; defaults to /etc/hosts then c-ares (resolve-host.ts). Tests pass one to play DNS rebinding. */
  readonly resolve?: (hostname: string) => Promise<readonly LookupAddress[]>
}

export interface FetchMetrics {
  readonly fetchFailures: { inc(labels: { reason: string }): void }
}

export interface FetchedImage {
  readonly bytes: Buffer
  readonly contentType: string
}

export interface ImageFetcher {
  fetch(url: string, opts: { deadline: number; metrics?: FetchMetrics }): Promise<FetchedImage>
  close(): Promise<void>
}

/** Bounded label values for `fetchFailures`. */
export type FetchFailureReason =
  | 'refused-url' | 'refused-address' | 'too-many-redirects' | 'too-large' | 'not-an-image' | 'empty-body'
  | 'http-4xx' | 'http-5xx' | 'http-other' | 'timeout' | 'dns' | 'connection'

class FetchFailure extends Error {
  constructor(readonly reason: FetchFailureReason, detail: string, readonly permanent: boolean, cause?: unknown) {
    super(detail, { cause })
  }
}

/** Thrown from inside the connector, so the socket is never opened. */
class AddressRefused extends Error {
  readonly code = 'CTR_ADDRESS_REFUSED'
}

const REDIRECTS = new Set([301, 302, 303, 307, 308])

/** Drains a small unwanted body so the connection can be reused; larger ones close it. Never rejects without a signal. */
function discard(body: Dispatcher.ResponseData['body']): void {
  void body.dump({ limit: 16 * 1024 })
}

function guardedLookup(policy: AddressPolicy, resolve: NonNullable<ImageFetchOptions['resolve']>): LookupFunction {
  return (hostname: string, options: LookupOptions, callback) => {
    resolve(hostname).then(
      (found) => {
        // All answers are checked, not only the family asked for: one internal record taints the name.
        const decision = checkResolved(hostname, found.map((a) => a.address), policy)
        const addresses = found.filter((a) => !options.family || a.family === options.family)
        if (!decision.allowed) return callback(new AddressRefused(`${hostname}: ${decision.reason}`), '', 0)
        const first = addresses[0]
        if (options.all) return callback(null, [...addresses])
        if (first === undefined) return callback(new AddressRefused(`${hostname}: no address`), '', 0)
        return callback(null, first.address, first.family)
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 0),
    )
  }
}

/** Checks literal IPs here and every resolved address in `lookup`, at connect time, for every connection. */
function guardedConnector(
  policy: AddressPolicy, options: ImageFetchOptions, resolve: NonNullable<ImageFetchOptions['resolve']>,
): buildConnector.connector {
  const base = buildConnector({ timeout: options.timeoutMs, lookup: guardedLookup(policy, resolve) })
  return (opts, callback) => {
    const host = opts.hostname.replace(/^\[|\]$/g, '')
    if (isIP(host) !== 0) {
      const decision = checkAddress(host, policy)
      if (!decision.allowed) return callback(new AddressRefused(`${host}: ${decision.reason}`), null)
    }
    return base(opts, callback)
  }
}

function mediaType(header: string | string[] | undefined): string {
  const value = Array.isArray(header) ? header[0] : header
  return (value ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
}

async function readCapped(body: AsyncIterable<Buffer>, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of body) {
    total += chunk.length
    if (total > maxBytes) throw new FetchFailure('too-large', `body exceeds ${maxBytes} bytes`, true)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks, total)
}

function classify(err: unknown, timedOut: boolean): FetchFailure {
  if (err instanceof FetchFailure) return err
  if (err instanceof AddressRefused || (err instanceof Error && err.cause instanceof AddressRefused)) {
    const refused = err instanceof AddressRefused ? err : (err.cause as AddressRefused)
    return new FetchFailure('refused-address', refused.message, true, err)
  }
  if (timedOut) return new FetchFailure('timeout', 'deadline reached', false, err)
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError
    || err instanceof undiciErrors.ConnectTimeoutError) {
    return new FetchFailure('timeout', err.message, false, err)
  }
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (code === 'ENOTFOUND') return new FetchFailure('dns', 'host not found', true, err)
  if (code === 'EAI_AGAIN' || code === 'ETIMEOUT' || code === 'ESERVFAIL' || (code === 'ECONNREFUSED' && isDnsError(err))) {
    return new FetchFailure('dns', 'name resolution failed', false, err)
  }
  return new FetchFailure('connection', err instanceof Error ? err.message : String(err), false, err)
}

/** c-ares errors carry the name being resolved in `hostname` and a `syscall` such as `queryA`. */
function isDnsError(err: unknown): boolean {
  return typeof (err as { syscall?: unknown } | undefined)?.syscall === 'string' && String((err as { syscall: string }).syscall).startsWith('query')
}

/** Query strings often carry signatures or tokens; messages end up in logs. */
function redact(url: string): string {
  if (!URL.canParse(url)) return '<unparsable url>'
  const { origin, pathname } = new URL(url)
  return `${origin}${pathname}`.slice(0, 200)
}

const REFUSALS: ReadonlySet<FetchFailureReason> = new Set([
  'refused-url', 'refused-address', 'too-many-redirects', 'too-large', 'not-an-image',
])

function toCtrError(failure: FetchFailure, url: string): CtrError {
  const name = REFUSALS.has(failure.reason) ? 'FETCH_REFUSED' : 'FETCH_FAILED'
  return new CtrError(name, [`${failure.reason}: ${failure.message} (${redact(url)})`], {
    permanent: failure.permanent, cause: failure,
  })
}

function statusFailure(status: number): FetchFailure {
  if (status >= 500) return new FetchFailure('http-5xx', `HTTP ${status}`, false)
  // Rate limiting and request timeouts say "later", not "never".
  if (status === 408 || status === 429) return new FetchFailure('http-4xx', `HTTP ${status}`, false)
  if (status >= 400) return new FetchFailure('http-4xx', `HTTP ${status}`, true)
  return new FetchFailure('http-other', `HTTP ${status}`, true)
}

/** One connection pool per set of exemptions that applies (bounded by the configuration's entries and ports). */
type AgentFor = (policy: AddressPolicy) => Agent

async function fetchOnce(
  agentFor: AgentFor, list: AllowList, options: ImageFetchOptions, url: string, signal: AbortSignal, deadlineAt: number,
): Promise<FetchedImage> {
  let current = url
  let judgedBy: AllowList | AddressPolicy = list
  for (let hop = 0; ; hop++) {
    const checked = checkUrl(current, judgedBy, options.maxUrlLength ?? DEFAULT_MAX_URL_LENGTH)
    if (!checked.allowed) throw new FetchFailure('refused-url', checked.reason, true)
    const remaining = Math.max(1, deadlineAt - Date.now())
    const res = await request(checked.url, {
      dispatcher: agentFor(checked.policy), method: 'GET', signal, headersTimeout: remaining, bodyTimeout: remaining,
      headers: { accept: 'image/*', 'user-agent': 'ctrserve-image-fetch' },
    })
    if (REDIRECTS.has(res.statusCode)) {
      discard(res.body)
      const location = res.headers.location
      const target = Array.isArray(location) ? location[0] : location
      if (target === undefined) throw new FetchFailure('http-other', `HTTP ${res.statusCode} without Location`, true)
      if (hop >= options.maxRedirects) {
        throw new FetchFailure('too-many-redirects', `more than ${options.maxRedirects} redirects`, true)
      }
      const next = checkRedirect(checked, target, judgedBy)
      if (!next.allowed) throw new FetchFailure('refused-url', next.reason, true)
      current = next.target
      judgedBy = next.judgedBy
      continue
    }
    if (res.statusCode !== 200) {
      discard(res.body)
      throw statusFailure(res.statusCode)
    }
    const contentType = mediaType(res.headers['content-type'])
    if (!contentType.startsWith('image/')) {
      discard(res.body)
      throw new FetchFailure('not-an-image', `content-type "${contentType}"`, true)
    }
    const declared = Number(res.headers['content-length'] ?? Number.NaN)
    if (declared > options.maxBytes) {
      discard(res.body)
      throw new FetchFailure('too-large', `content-length ${declared} exceeds ${options.maxBytes}`, true)
    }
    const bytes = await readCapped(res.body, options.maxBytes)
    if (bytes.length === 0) throw new FetchFailure('empty-body', 'empty body', true)
    return { bytes, contentType }
  }
}

/** One guarded connection pool; reuse it across fetches and close it on shutdown. */
export function createImageFetcher(options: ImageFetchOptions): ImageFetcher {
  const list = createAllowList(options.allowedHosts)
  const resolve = options.resolve ?? createHostResolver({ timeoutMs: Math.max(50, Math.floor(options.timeoutMs / 2)) })
  const agents = new Map<string, Agent>()
  const agentFor: AgentFor = (policy) => {
    let agent = agents.get(policy.key)
    if (!agent) {
      agent = new Agent({ connect: guardedConnector(policy, options, resolve), keepAliveTimeout: 4_000, pipelining: 1 })
      agents.set(policy.key, agent)
    }
    return agent
  }
  return {
    async fetch(url, { deadline, metrics }) {
      const deadlineAt = Math.min(deadline, Date.now() + options.timeoutMs)
      const controller = new AbortController()
      const timer = setTimeout(() => controller.abort(new Error('image fetch deadline reached')),
        Math.max(0, deadlineAt - Date.now()))
      try {
        if (deadlineAt <= Date.now()) throw new FetchFailure('timeout', 'deadline already passed', false)
        return await fetchOnce(agentFor, list, options, url, controller.signal, deadlineAt)
      } catch (err) {
        const failure = classify(err, controller.signal.aborted)
        metrics?.fetchFailures.inc({ reason: failure.reason })
        throw toCtrError(failure, url)
      } finally {
        clearTimeout(timer)
      }
    },
    async close() {
      await Promise.all([...agents.values()].map((a) => a.close()))
    },
  }
}

/** One-off fetch with its own pool (workers should hold an `ImageFetcher` instead). */
export async function fetchImage(
  url: string, opts: { deadline: number; fetchOptions: ImageFetchOptions; metrics?: FetchMetrics },
): Promise<FetchedImage> {
  const fetcher = createImageFetcher(opts.fetchOptions)
  try {
    return await fetcher.fetch(url, { deadline: opts.deadline, metrics: opts.metrics })
  } finally {
    await fetcher.close()
  }
}
