import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { LookupAddress } from 'node:dns'
import sharp from 'sharp'
import { CtrError } from '../src/errors.ts'
import { createMetrics, type Metrics } from '../src/metrics.ts'
import { createImageFetcher, fetchImage, type ImageFetchOptions } from '../src/modalities/image/fetch-image.ts'
import { loadImageInput, type ImageInputSpec } from '../src/modalities/image/index.ts'

// Real sockets, loopback only: the origin listens on 127.0.0.2 (the only allowed address) and a
// canary on 127.0.0.1 counts every connection it receives; it must receive none.
// Host names resolve through the system resolver (`localhost`, from /etc/hosts) or through an
// explicit resolver that only ever answers loopback addresses.

const MAX_BYTES = 50_000

interface Listening {
  readonly server: Server
  readonly port: number
  connections: number
}

async function listen(
  host: string, handler: (req: IncomingMessage, res: ServerResponse) => void, port = 0,
): Promise<Listening> {
  const server = createServer(handler)
  const state = { server, port: 0, connections: 0 }
  server.on('connection', () => { state.connections++ })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, resolve)
  })
  state.port = (server.address() as AddressInfo).port
  return state
}

async function close(l: Listening): Promise<void> {
  l.server.closeAllConnections()
  await new Promise<void>((resolve) => l.server.close(() => resolve()))
}

/** Writes one byte every `everyMs` until the client goes away. */
function drip(res: ServerResponse, everyMs: number, chunk: Buffer): void {
  res.writeHead(200, { 'content-type': 'image/png' })
  const timer = setInterval(() => res.write(chunk), everyMs)
  res.on('close', () => clearInterval(timer))
}

let png: Buffer
let canary: Listening
let origin: Listening
let metrics: Metrics
let canaryUrl: (notation: string) => string
let originUrl: (path: string) => string

function route(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://origin')
  const send = (status: number, headers: Record<string, string | number>, body: string | Buffer = '') => {
    res.writeHead(status, headers)
    res.end(body)
  }
  switch (url.pathname) {
    case '/ok.png': return send(200, { 'content-type': 'image/png; charset=binary', 'content-length': png.length }, png)
    case '/redirect': return send(302, { location: url.searchParams.get('to') ?? '/' })
    case '/relative': return send(301, { location: 'ok.png' })
    case '/chain': {
      const n = Number(url.searchParams.get('n'))
      return send(307, { location: n <= 0 ? '/ok.png' : `/chain?n=${n - 1}` })
    }
    case '/big-declared': return send(200, { 'content-type': 'image/png', 'content-length': MAX_BYTES + 1 }, Buffer.alloc(MAX_BYTES + 1))
    case '/big-chunked': {
      res.writeHead(200, { 'content-type': 'image/png' })
      for (let i = 0; i < 10; i++) res.write(Buffer.alloc(MAX_BYTES / 5))
      return void res.end()
    }
    case '/endless-fast': return drip(res, 1, Buffer.alloc(4096))
    case '/slow-drip': return drip(res, 50, Buffer.from([0x89]))
    case '/no-headers': return undefined
    case '/html': return send(200, { 'content-type': 'text/html' }, '<html><body>hello</body></html>')
    case '/html-as-jpeg': return send(200, { 'content-type': 'image/jpeg' }, '<!doctype html><html><body>hello</body></html>')
    case '/no-type': return send(200, {}, png)
    case '/empty': return send(200, { 'content-type': 'image/png', 'content-length': 0 })
    case '/truncated.png': return send(200, { 'content-type': 'image/png' }, png.subarray(0, 60))
    default: {
      const status = Number(url.pathname.slice(1))
      return send(Number.isInteger(status) && status >= 200 ? status : 404, { 'content-type': 'text/plain' }, 'no')
    }
  }
}

const options = (extra: Partial<ImageFetchOptions> = {}): ImageFetchOptions => ({
  timeoutMs: 3000, maxBytes: MAX_BYTES, maxRedirects: 3, allowedHosts: ['127.0.0.2'], ...extra,
})

const soon = (ms = 3000) => Date.now() + ms

async function expectFailure(
  promise: Promise<unknown>, want: { code: string; permanent: boolean; reason: string },
): Promise<CtrError> {
  let caught: unknown
  await promise.then(() => assert.fail(`expected ${want.reason}`), (err: unknown) => { caught = err })
  assert.ok(caught instanceof CtrError, String(caught))
  assert.equal(caught.code, want.code, caught.message)
  assert.equal(caught.permanent, want.permanent, caught.message)
  assert.match(caught.message, new RegExp(`: ${want.reason}:`), caught.message)
  return caught
}

async function failureCounts(): Promise<Record<string, number>> {
  const { values } = await metrics.fetchFailures.get()
  return Object.fromEntries(values.map((v) => [String(v.labels.reason), v.value]))
}

before(async () => {
  png = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 200, g: 100, b: 50 } } }).png().toBuffer()
  // Same port on both addresses, so that a name rebinding from one to the other reaches the canary.
  origin = await listen('127.0.0.2', route)
  canary = await listen('127.0.0.1', (_req, res) => res.end('canary'), origin.port)
  canaryUrl = (host) => `http://${host}:${canary.port}/a.png`
  originUrl = (path) => `http://127.0.0.2:${origin.port}${path}`
  metrics = createMetrics({ defaultMetrics: false })
})

after(async () => {
  await close(origin)
  await close(canary)
})

describe('fetch from an allowed origin', () => {
  test('returns the bytes and the media type', async () => {
    const got = await fetchImage(originUrl('/ok.png'), { deadline: soon(), fetchOptions: options() })
    assert.deepEqual(got.bytes, png)
    assert.equal(got.contentType, 'image/png')
  })

  test('follows up to maxRedirects redirects, relative ones included, and no more', async () => {
    const fetcher = createImageFetcher(options())
    try {
      assert.deepEqual((await fetcher.fetch(originUrl('/chain?n=2'), { deadline: soon() })).bytes, png)
      assert.deepEqual((await fetcher.fetch(originUrl('/relative'), { deadline: soon() })).bytes, png)
      await expectFailure(fetcher.fetch(originUrl('/chain?n=3'), { deadline: soon(), metrics }),
        { code: 'CTR_ERR_FETCH_REFUSED', permanent: true, reason: 'too-many-redirects' })
      const none = createImageFetcher(options({ maxRedirects: 0 }))
      await expectFailure(none.fetch(originUrl('/relative'), { deadline: soon() }),
        { code: 'CTR_ERR_FETCH_REFUSED', permanent: true, reason: 'too-many-redirects' })
      await none.close()
    } finally {
      await fetcher.close()
    }
  })

  test('an allowed host name is exempt whatever it resolves to; its redirects are not', async () => {
    const resolve = async (): Promise<readonly LookupAddress[]> => [{ address: '127.0.0.2', family: 4 }]
    const fetchOptions = options({ allowedHosts: ['images.test'], resolve })
    const got = await fetchImage(`http://images.test:${origin.port}/ok.png`, { deadline: soon(), fetchOptions })
    assert.deepEqual(got.bytes, png)
    const toIp = `http://images.test:${origin.port}/redirect?to=${encodeURIComponent(originUrl('/ok.png'))}`
    await expectFailure(fetchImage(toIp, { deadline: soon(), fetchOptions }),
      { code: 'CTR_ERR_FETCH_REFUSED', permanent: true, reason: 'refused-url' })
  })
})

describe('the canary on 127.0.0.1 is never contacted', () => {
  const notations = [
    '127.0.0.1', '2130706433', '0x7f.1', '0x7f000001', '0177.0.0.1', '017700000001', '127.1', '127.0.1',
    '127.0.0.1.', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]', '[::1]', '[::127.0.0.1]', '0', '0.0.0.0',
  ]
  // Only names /etc/hosts answers: a name it does not know would be sent to a real DNS server.
  const names = ['localhost', 'LOCALHOST']

  after(() => assert.equal(canary.connections, 0, 'the canary was contacted'))

  test('literal IPs in every notation are refused before connecting', async () => {
    const fetcher = createImageFetcher(options())
    try {
      for (const host of notations) {
        await expectFailure(fetcher.fetch(canaryUrl(host), { deadline: soon(), metrics }),
          { code: 'CTR_ERR_FETCH_REFUSED', permanent: true, reason: 'refused-url' })
      }
    } finally {
      await fetcher.close()
    }
    assert.equal(canary.connections, 0)
  })

  test('localhost is refused after resolution by the system resolver', async () => {
    const fetcher = createImageFetcher(options())
    try {
      for (const host of names) {
        await expectFailure(fetcher.fetch(canaryUrl(host), { deadline: soon(), metrics }),
          { code: 'CTR_ERR_FETCH_REFUSED', permanent: true, reason: 'refused-address' })
      }
    } finally {
      await fetcher.close()
    }
    assert.equal(canary.connections, 0)
  })

  test('redirects from the allowed origin to the canary are refused at every hop', async () => {
    const fetcher = createImageFetcher(options())
    try {
      for (const host of [...notations, ...names]) {
        const target = encodeURIComponent(canaryUrl(host))
        const err = await expectFailure(fetcher.fetch(originUrl(`/redirect?to=${target}`), { deadline: soon(), metrics }),
          { code: 'CTR_ERR_FETCH_REFUSED', permanent: true, reason: 'refused-(url|address)' })
        assert.ok(err.permanent)
        // second hop of a chain: origin → origin → canary
        const twice = encodeURIComponent(originUrl(`/redirect?to=${target}`))
        await expectFailure(fetcher.fetch(originUrl(`/redirect?to=${twice}`), { deadline: soon() }),
          { code: 'CTR_ERR_FETCH_REFUSED', permanent: true, reason: 'refused-(url|address)' })
      }
    } finally {
      await fetcher.close()
    }
    assert.equal(canary.connections, 0)
  })

  test('DNS rebinding: every resolved address is checked at connect time', async () => {
    const answers4and6 = [
      [{ address: '127.0.0.2', family: 4 }, { address: '127.0.0.1', family: 4 }],
      [{ address: '127.0.0.2', family: 4 }, { address: '::1', family: 6 }],
      [{ address: '127.0.0.2', family: 4 }, { address: '::ffff:127.0.0.1', family: 6 }],
    ] as const
    for (const answer of answers4and6) {
      await expectFailure(fetchImage(`http://mixed.test:${canary.port}/a.png`,
        { deadline: soon(), fetchOptions: options({ resolve: async () => answer }) }),
      { code: 'CTR_ERR_FETCH_REFUSED', permanent: true, reason: 'refused-address' })
    }

    // First answer is the allowed origin, every later one the canary (a TTL-0 rebinding server).
    let answers = 0
    const rebinding = async (): Promise<readonly LookupAddress[]> =>
      [{ address: answers++ === 0 ? '127.0.0.2' : '127.0.0.1', family: 4 }]
    const fetchOptions = options({ resolve: rebinding })
    const url = `http://rebind.test:${origin.port}/ok.png`
    assert.equal(canary.port, origin.port)
    assert.deepEqual((await fetchImage(url, { deadline: soon(), fetchOptions })).bytes, png)
    await expectFailure(fetchImage(url, { deadline: soon(), fetchOptions }),
      { code: 'CTR_ERR_FETCH_REFUSED', permanent: true, reason: 'refused-address' })
    // A pooled connection stays pinned to the address it was opened to: no new lookup, no rebinding.
    const pooled = createImageFetcher(options({ resolve: async () => [{ address: '127.0.0.2', family: 4 }] }))
    try {
      assert.deepEqual((await pooled.fetch(url, { deadline: soon() })).bytes, png)
      assert.deepEqual((await pooled.fetch(url, { deadline: soon() })).bytes, png)
    } finally {
      await pooled.close()
    }
    assert.equal(answers, 2)
    assert.equal(canary.connections, 0)
  })
})

describe('limits and failure classes', () => {
  const fetcher = createImageFetcher(options())
  after(() => fetcher.close())

  test('byte limit: declared content-length and streamed bodies', async () => {
    await expectFailure(fetcher.fetch(originUrl('/big-declared'), { deadline: soon(), metrics }),
      { code: 'CTR_ERR_FETCH_REFUSED', permanent: true, reason: 'too-large' })
    await expectFailure(fetcher.fetch(originUrl('/big-chunked'), { deadline: soon(), metrics }),
      { code: 'CTR_ERR_FETCH_REFUSED', permanent: true, reason: 'too-large' })
    const started = Date.now()
    await expectFailure(fetcher.fetch(originUrl('/endless-fast'), { deadline: soon(), metrics }),
      { code: 'CTR_ERR_FETCH_REFUSED', permanent: true, reason: 'too-large' })
    assert.ok(Date.now() - started < 2500, 'the endless body was cut at the byte limit, not the deadline')
  })

  test('slow-drip bodies and silent servers end at the caller deadline, as transient failures', async () => {
    for (const path of ['/slow-drip', '/no-headers']) {
      const started = Date.now()
      await expectFailure(fetcher.fetch(originUrl(path), { deadline: Date.now() + 300, metrics }),
        { code: 'CTR_ERR_FETCH_FAILED', permanent: false, reason: 'timeout' })
      const took = Date.now() - started
      assert.ok(took >= 250 && took < 1500, `${path} took ${took} ms for a 300 ms deadline`)
    }
  })

  test('the configured timeout caps a generous deadline, and a past deadline never connects', async () => {
    const short = createImageFetcher(options({ timeoutMs: 200 }))
    try {
      const started = Date.now()
      await expectFailure(short.fetch(originUrl('/slow-drip'), { deadline: soon(60_000) }),
        { code: 'CTR_ERR_FETCH_FAILED', permanent: false, reason: 'timeout' })
      assert.ok(Date.now() - started < 1500)
      const before = origin.connections
      await expectFailure(short.fetch(originUrl('/ok.png'), { deadline: Date.now() - 1 }),
        { code: 'CTR_ERR_FETCH_FAILED', permanent: false, reason: 'timeout' })
      assert.equal(origin.connections, before)
    } finally {
      await short.close()
    }
  })

  test('content type must be image/*; empty bodies are refused', async () => {
    for (const path of ['/html', '/no-type']) {
      await expectFailure(fetcher.fetch(originUrl(path), { deadline: soon(), metrics }),
        { code: 'CTR_ERR_FETCH_REFUSED', permanent: true, reason: 'not-an-image' })
    }
    await expectFailure(fetcher.fetch(originUrl('/empty'), { deadline: soon(), metrics }),
      { code: 'CTR_ERR_FETCH_FAILED', permanent: true, reason: 'empty-body' })
  })

  test('HTTP status: 4xx permanent (408/429 transient), 5xx transient', async () => {
    const cases = [
      [404, true, 'http-4xx'], [403, true, 'http-4xx'], [410, true, 'http-4xx'], [429, false, 'http-4xx'],
      [408, false, 'http-4xx'], [500, false, 'http-5xx'], [503, false, 'http-5xx'], [204, true, 'http-other'],
    ] as const
    for (const [status, permanent, reason] of cases) {
      await expectFailure(fetcher.fetch(originUrl(`/${status}`), { deadline: soon(), metrics }),
        { code: 'CTR_ERR_FETCH_FAILED', permanent, reason })
    }
  })

  test('a closed port is a transient connection failure', async () => {
    const gone = await listen('127.0.0.2', (_req, res) => res.end())
    const port = gone.port
    await close(gone)
    await expectFailure(fetcher.fetch(`http://127.0.0.2:${port}/ok.png`, { deadline: soon(), metrics }),
      { code: 'CTR_ERR_FETCH_FAILED', permanent: false, reason: 'connection' })
  })

  test('name resolution failures: NXDOMAIN permanent, temporary failure transient', async () => {
    const failing = (code: string) => async (): Promise<readonly LookupAddress[]> => {
      throw Object.assign(new Error(`getaddrinfo ${code} nowhere.test`), { code })
    }
    await expectFailure(fetchImage(`http://nowhere.test:${origin.port}/ok.png`,
      { deadline: soon(), fetchOptions: options({ resolve: failing('ENOTFOUND') }), metrics }),
    { code: 'CTR_ERR_FETCH_FAILED', permanent: true, reason: 'dns' })
    await expectFailure(fetchImage(`http://nowhere.test:${origin.port}/ok.png`,
      { deadline: soon(), fetchOptions: options({ resolve: failing('EAI_AGAIN') }), metrics }),
    { code: 'CTR_ERR_FETCH_FAILED', permanent: false, reason: 'dns' })
    // c-ares (resolve-host.ts) reports a server that does not answer as ETIMEOUT: transient
    await expectFailure(fetchImage(`http://nowhere.test:${origin.port}/ok.png`,
      { deadline: soon(), fetchOptions: options({ resolve: failing('ETIMEOUT') }), metrics }),
    { code: 'CTR_ERR_FETCH_FAILED', permanent: false, reason: 'dns' })
  })

  test('error messages keep the origin and path but never the query string', async () => {
    const err = await expectFailure(fetcher.fetch(originUrl('/404?token=s3cr3t'), { deadline: soon() }),
      { code: 'CTR_ERR_FETCH_FAILED', permanent: true, reason: 'http-4xx' })
    assert.ok(err.message.includes(`http://127.0.0.2:${origin.port}/404`), err.message)
    assert.ok(!err.message.includes('s3cr3t'), err.message)
  })

  test('failures are counted by reason', async () => {
    const counts = await failureCounts()
    assert.ok((counts['too-large'] ?? 0) >= 3, JSON.stringify(counts))
    assert.ok((counts['timeout'] ?? 0) >= 2, JSON.stringify(counts))
    assert.ok((counts['refused-url'] ?? 0) >= 15, JSON.stringify(counts))
    assert.ok((counts['refused-address'] ?? 0) >= 3, JSON.stringify(counts))
    assert.equal(counts['http-4xx'], 5)
    assert.equal(counts['http-5xx'], 2)
    assert.equal(counts['not-an-image'], 2)
    assert.equal(counts['dns'], 3)
  })
})

describe('loadImageInput: fetch + preprocess', () => {
  const spec: ImageInputSpec = {
    name: 'pixel_values', layout: 'NCHW', dtype: 'float32', height: 4, width: 4, channel_order: 'RGB',
    resize: { fit: 'fill', kernel: 'lanczos3' }, background: [255, 255, 255], mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5],
  }

  test('returns the encoder tensor for a good image', async () => {
    const { tensor, pixels } = await loadImageInput(originUrl('/ok.png'), { deadline: soon(), fetchOptions: options(), spec })
    assert.equal(pixels.length, 4 * 4 * 3)
    assert.equal(tensor.length, 3 * 4 * 4)
    assert.ok(Math.abs((tensor[0] ?? 0) - (200 / 255 - 0.5) / 0.5) <= 1e-6)
    assert.ok(Math.abs((tensor[16] ?? 0) - (100 / 255 - 0.5) / 0.5) <= 1e-6)
    assert.ok(Math.abs((tensor[32] ?? 0) - (50 / 255 - 0.5) / 0.5) <= 1e-6)
  })

  test('HTML served as image/jpeg and truncated files end as permanent IMAGE_INVALID, counted', async () => {
    const local = createMetrics({ defaultMetrics: false })
    const fetcher = createImageFetcher(options())
    try {
      for (const path of ['/html-as-jpeg', '/truncated.png']) {
        await assert.rejects(loadImageInput(originUrl(path), { deadline: soon(), fetchOptions: options(), fetcher, spec, metrics: local }),
          (err: unknown) => err instanceof CtrError && err.code === 'CTR_ERR_IMAGE_INVALID' && err.permanent)
      }
      await expectFailure(loadImageInput(originUrl('/404'), { deadline: soon(), fetchOptions: options(), fetcher, spec, metrics: local }),
        { code: 'CTR_ERR_FETCH_FAILED', permanent: true, reason: 'http-4xx' })
    } finally {
      await fetcher.close()
    }
    const { values } = await local.fetchFailures.get()
    const counts = Object.fromEntries(values.map((v) => [String(v.labels.reason), v.value]))
    assert.deepEqual(counts, { 'invalid-image': 2, 'http-4xx': 1 })
  })
})
