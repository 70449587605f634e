import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CtrError } from '../src/errors.ts'
import {
  checkAddress, checkRedirect, checkResolved, checkUrl, createAllowList, policyForPort,
} from '../src/modalities/image/address-policy.ts'

// Pure decision tables: nothing here opens a socket or resolves a name.

type Row = readonly [input: string, allowed: boolean, reason?: RegExp]

const noAllowList = createAllowList([])
const noExemptions = policyForPort(noAllowList, 80)

const URL_CASES: readonly Row[] = [
  // IPv4 loopback in every notation WHATWG URL parsing accepts
  ['http://127.0.0.1/', false, /loopback/],
  ['http://127.255.255.254/', false, /loopback/],
  ['http://2130706433/', false, /loopback/],
  ['http://0x7f.1/', false, /loopback/],
  ['http://0x7f000001/', false, /loopback/],
  ['http://0x7f.0x0.0x0.0x1/', false, /loopback/],
  ['http://0177.0.0.1/', false, /loopback/],
  ['http://017700000001/', false, /loopback/],
  ['http://127.1/', false, /loopback/],
  ['http://127.0.1/', false, /loopback/],
  ['http://127.0.0.1./', false, /loopback/],
  ['http://%31%32%37.0.0.1/', false, /loopback/],
  ['http://\u2460\u2461\u2466.0.0.1/', false, /loopback/],
  ['http://\uff11\uff12\uff17.0.0.1/', false, /loopback/],
  ['HTTP://127.0.0.1:8080/a.png', false, /loopback/],
  // IPv6 literals
  ['http://[::1]/', false, /loopback/],
  ['http://[0:0:0:0:0:0:0:1]/', false, /loopback/],
  ['http://[::]/', false, /unspecified/],
  ['http://[::ffff:127.0.0.1]/', false, /ipv4-mapped:loopback/],
  ['http://[::ffff:7f00:1]/', false, /ipv4-mapped:loopback/],
  ['http://[0:0:0:0:0:ffff:127.0.0.1]/', false, /ipv4-mapped:loopback/],
  ['http://[::ffff:10.0.0.1]/', false, /ipv4-mapped:private/],
  ['http://[::ffff:169.254.169.254]/', false, /ipv4-mapped:link-local/],
  ['http://[::ffff:0:127.0.0.1]/', false, /ipv4-translated:loopback/],
  ['http://[::127.0.0.1]/', false, /ipv4-compatible/],
  ['http://[::8.8.8.8]/', false, /ipv4-compatible/],
  ['http://[64:ff9b::127.0.0.1]/', false, /nat64:loopback/],
  ['http://[64:ff9b::192.168.0.1]/', false, /nat64:private/],
  ['http://[64:ff9b:1::1]/', false, /nat64-local/],
  ['http://[2002:7f00:1::]/', false, /6to4:loopback/],
  ['http://[2002:a00:1::1]/', false, /6to4:private/],
  ['http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/', false, /teredo-client:loopback/],
  ['http://[2001:0:a00:1::1]/', false, /teredo-server:private/],
  ['http://[fe80::1]/', false, /link-local/],
  ['http://[febf::1]/', false, /link-local/],
  ['http://[fec0::1]/', false, /site-local/],
  ['http://[fc00::1]/', false, /unique-local/],
  ['http://[fd12:3456:789a::1]/', false, /unique-local/],
  ['http://[ff02::1]/', false, /multicast/],
  ['http://[ff05::1:3]/', false, /multicast/],
  ['http://[100::1]/', false, /discard/],
  ['http://[2001:2::1]/', false, /benchmarking/],
  ['http://[2001:db8::1]/', false, /documentation/],
  ['http://[3fff::1]/', false, /documentation/],
  ['http://[4000::1]/', false, /reserved/],
  ['http://[fe80::1%25eth0]/', false, /url-invalid/],
  // IPv4 special-purpose ranges
  ['http://0/', false, /unspecified/],
  ['http://0.0.0.0/', false, /unspecified/],
  ['http://0.1.2.3/', false, /unspecified/],
  ['http://10.0.0.1/', false, /private/],
  ['http://10.255.255.255/', false, /private/],
  ['http://012.0.0.1/', false, /private/],
  ['http://172.16.0.1/', false, /private/],
  ['http://172.31.255.255/', false, /private/],
  ['http://192.168.1.1/', false, /private/],
  ['http://3232235777/', false, /private/],
  ['http://169.254.169.254/latest/meta-data/', false, /link-local/],
  ['http://0xa9fea9fe/', false, /link-local/],
  ['http://100.64.0.1/', false, /cgnat/],
  ['http://100.127.255.255/', false, /cgnat/],
  ['http://224.0.0.1/', false, /multicast/],
  ['http://239.255.255.250/', false, /multicast/],
  ['http://255.255.255.255/', false, /broadcast/],
  ['http://240.0.0.1/', false, /reserved/],
  ['http://198.18.0.1/', false, /benchmarking/],
  ['http://198.19.255.255/', false, /benchmarking/],
  ['http://192.0.2.1/', false, /documentation/],
  ['http://198.51.100.7/', false, /documentation/],
  ['http://203.0.113.9/', false, /documentation/],
  ['http://192.0.0.8/', false, /ietf-protocol/],
  ['http://192.88.99.1/', false, /6to4-relay/],
  // schemes
  ['ftp://example.com/a.png', false, /scheme ftp:/],
  ['file:///etc/passwd', false, /scheme file:/],
  ['data:image/png;base64,iVBORw0KGgo=', false, /scheme data:/],
  ['javascript:alert(1)', false, /scheme javascript:/],
  ['gopher://example.com/', false, /scheme gopher:/],
  ['ws://example.com/', false, /scheme ws:/],
  // userinfo tricks
  ['http://user:pw@example.com/', false, /credentials/],
  ['http://user@example.com/', false, /credentials/],
  ['http://:pw@example.com/', false, /credentials/],
  ['http://example.com@127.0.0.1/', false, /credentials/],
  ['http://127.0.0.1#@example.com/', false, /loopback/],
  ['http://127.0.0.1?@example.com/', false, /loopback/],
  // ports, length, garbage
  ['http://example.com:0/', false, /bad-port/],
  ['http://example.com:25/', false, /bad-port/],
  ['http://example.com:6667/', false, /bad-port/],
  ['http://example.com:65536/', false, /url-invalid/],
  ['http://256.0.0.1/', false, /url-invalid/],
  ['not a url', false, /url-invalid/],
  [`https://example.com/${'a'.repeat(3000)}`, false, /url-too-long/],
  // allowed: global unicast literals and host names (names are checked again after DNS)
  ['http://8.8.8.8/', true],
  ['http://134744072/', true],
  ['https://1.1.1.1/img.png', true],
  ['http://172.32.0.1/', true],
  ['http://100.128.0.1/', true],
  ['http://[2606:4700:4700::1111]/', true],
  ['http://[::ffff:8.8.8.8]/', true],
  ['http://[64:ff9b::8.8.8.8]/', true],
  ['https://example.com/a.jpg', true],
  ['https://example.com:8443/a.jpg', true],
  ['http://example.com\\@127.0.0.1/', true],
  ['http://localhost/', true],
]

test('checkUrl: decision table without an allow list', () => {
  assert.ok(URL_CASES.length >= 60)
  for (const [input, allowed, reason] of URL_CASES) {
    const decision = checkUrl(input, noAllowList)
    assert.equal(decision.allowed, allowed, `${input} → ${JSON.stringify(decision)}`)
    if (!decision.allowed && reason !== undefined) assert.match(decision.reason, reason, input)
  }
})

test('checkUrl: the allow list overrides addresses but never scheme, credentials or port', () => {
  const policy = createAllowList(['127.0.0.2', ' images.internal. ', '10.1.0.0/16', ''])
  const cases: readonly Row[] = [
    ['http://127.0.0.2:8080/a.png', true],
    ['http://2130706434/', true],
    ['http://0x7f.2/', true],
    ['http://[::ffff:127.0.0.2]/', true],
    ['http://127.0.0.1/', false, /loopback/],
    ['http://127.0.0.3/', false, /loopback/],
    ['http://10.1.2.3/', true],
    ['http://10.2.0.1/', false, /private/],
    ['http://images.internal/', true],
    ['http://user@127.0.0.2/', false, /credentials/],
    ['ftp://127.0.0.2/', false, /scheme/],
    ['http://127.0.0.2:25/', false, /bad-port/],
  ]
  for (const [input, allowed, reason] of cases) {
    const decision = checkUrl(input, policy)
    assert.equal(decision.allowed, allowed, `${input} → ${JSON.stringify(decision)}`)
    if (!decision.allowed && reason !== undefined) assert.match(decision.reason, reason, input)
  }
})

test('checkUrl reports the normalised host and whether it is an IP literal', () => {
  const decision = checkUrl('http://0x7f.2:81/x', createAllowList(['127.0.0.2']))
  assert.deepEqual(decision.allowed && [decision.hostname, decision.isIp, decision.url.port], ['127.0.0.2', true, '81'])
  const v6 = checkUrl('http://[2606:4700::1]/', noAllowList)
  assert.deepEqual(v6.allowed && [v6.hostname, v6.isIp], ['2606:4700::1', true])
  const name = checkUrl('http://Images.Example.COM/', noAllowList)
  assert.deepEqual(name.allowed && [name.hostname, name.isIp], ['images.example.com', false])
})

test('checkAddress: resolver answers in any notation inet_aton would accept', () => {
  const cases: readonly Row[] = [
    ['127.0.0.1', false, /loopback/],
    ['0177.0.0.1', false, /loopback/],
    ['0x7f.0.0.1', false, /loopback/],
    ['2130706433', false, /loopback/],
    ['127.1', false, /loopback/],
    ['::1', false, /loopback/],
    ['[::1]', false, /loopback/],
    ['::ffff:127.0.0.1', false, /loopback/],
    ['fe80::1%eth0', false, /link-local/],
    ['169.254.0.1', false, /link-local/],
    ['8.8.8.8', true],
    ['2001:4860:4860::8888', true],
    ['not-an-ip', false, /not-an-ip/],
    ['', false, /not-an-ip/],
    ['1.2.3.4.5', false, /not-an-ip/],
  ]
  for (const [input, allowed, reason] of cases) {
    const decision = checkAddress(input, noExemptions)
    assert.equal(decision.allowed, allowed, `${input} → ${JSON.stringify(decision)}`)
    if (!decision.allowed && reason !== undefined) assert.match(decision.reason, reason, input)
  }
})

test('checkResolved: every resolved address must pass unless the name itself is allowed', () => {
  const policy = policyForPort(createAllowList(['images.test', '127.0.0.2']), 443)
  assert.deepEqual(checkResolved('cdn.example', ['8.8.8.8', '1.1.1.1'], policy), { allowed: true })
  const mixed = checkResolved('rebind.example', ['8.8.8.8', '127.0.0.1'], policy)
  assert.equal(mixed.allowed, false)
  assert.match(!mixed.allowed ? mixed.reason : '', /127\.0\.0\.1 loopback/)
  assert.equal(checkResolved('v6.example', ['2001:4860::1', 'fd00::1'], policy).allowed, false)
  assert.equal(checkResolved('empty.example', [], policy).allowed, false)
  assert.deepEqual(checkResolved('IMAGES.test.', ['127.0.0.1'], policy), { allowed: true })
  assert.deepEqual(checkResolved('other.test', ['127.0.0.2'], policy), { allowed: true })
  assert.equal(checkResolved('other.test', ['127.0.0.2', '127.0.0.1'], policy).allowed, false)
})

test('createAllowList refuses entries that are not hosts, IPs or CIDR ranges with an optional port', () => {
  for (const bad of ['http://x.test', '127.0.0.1:0', '127.0.0.1:65536', 'a b', '*.example.com', 'host/path', 'host:port', '[::1]:x']) {
    assert.throws(() => createAllowList([bad]), (err: unknown) =>
      err instanceof CtrError && err.code === 'CTR_ERR_BAD_CONFIG' && err.message.includes('IMAGE_ALLOWED_HOSTS'), bad)
  }
})

test('an allow-list entry may name a port; internal service ports must be named explicitly', () => {
  const list = createAllowList([
    'images.internal', 'cache.internal:6379', '127.0.0.2:8080', '10.1.0.0/16:8443', '[fd00::/8]:9000', '127.0.0.3',
  ])
  const cases: readonly Row[] = [
    // a port-less entry: every ordinary port, no internal service port
    ['http://127.0.0.3/', true],
    ['http://127.0.0.3:8080/', true],
    ['http://127.0.0.3:6379/', false, /loopback/],
    ['http://127.0.0.3:2375/', false, /loopback/],
    ['http://127.0.0.3:2376/', false, /loopback/],
    ['http://127.0.0.3:9229/', false, /loopback/],
    // an entry with a port: that port only
    ['http://127.0.0.2:8080/', true],
    ['http://127.0.0.2/', false, /loopback/],
    ['http://127.0.0.2:8081/', false, /loopback/],
    ['http://10.1.2.3:8443/', true],
    ['https://10.1.2.3/', false, /private/],
    ['http://[fd00::5]:9000/', true],
    ['http://[fd00::5]:9001/', false, /unique-local/],
  ]
  for (const [input, allowed, reason] of cases) {
    const decision = checkUrl(input, list)
    assert.equal(decision.allowed, allowed, `${input} → ${JSON.stringify(decision)}`)
    if (!decision.allowed && reason !== undefined) assert.match(decision.reason, reason, input)
  }
  // Names are exempted after resolution: the port decides whether the name is in the narrowed policy.
  assert.deepEqual(checkResolved('images.internal', ['10.9.9.9'], policyForPort(list, 443)), { allowed: true })
  assert.equal(checkResolved('images.internal', ['10.9.9.9'], policyForPort(list, 6379)).allowed, false)
  assert.deepEqual(checkResolved('cache.internal', ['10.9.9.9'], policyForPort(list, 6379)), { allowed: true })
  assert.equal(checkResolved('cache.internal', ['10.9.9.9'], policyForPort(list, 80)).allowed, false)
  // Equal exemptions share a key (one connection pool); different ones do not.
  assert.equal(policyForPort(list, 80).key, policyForPort(list, 443).key)
  assert.notEqual(policyForPort(list, 80).key, policyForPort(list, 8080).key)
  assert.equal(policyForPort(list, 6379).key, '1')
})

test('checkRedirect: no https → http; exemptions survive only redirects from an exempt host', () => {
  const list = createAllowList(['127.0.0.2', 'images.internal'])
  const hop = (url: string, judgedBy: Parameters<typeof checkUrl>[1] = list) => {
    const d = checkUrl(url, judgedBy)
    assert.ok(d.allowed, url)
    return d
  }
  const down = checkRedirect(hop('https://cdn.example/a.png'), 'http://cdn.example/a.png', list)
  assert.deepEqual(down, { allowed: false, reason: 'redirect from https to http' })
  assert.equal(checkRedirect(hop('http://cdn.example/a.png'), 'https://cdn.example/b.png', list).allowed, true)
  assert.equal(checkRedirect(hop('https://cdn.example/a.png'), '//other.example/b.png', list).allowed, true)

  // public origin → exempt internal address: judged strictly, refused
  const fromPublic = checkRedirect(hop('https://cdn.example/a.png'), 'https://127.0.0.2/x.png', list)
  assert.ok(fromPublic.allowed)
  const target = checkUrl(fromPublic.target, fromPublic.judgedBy)
  assert.equal(target.allowed, false)
  assert.match(!target.allowed ? target.reason : '', /loopback/)
  // ...and it stays strict for the rest of the chain
  const viaPublic = checkRedirect(hop('https://other.example/', fromPublic.judgedBy), 'https://127.0.0.2/', fromPublic.judgedBy)
  assert.ok(viaPublic.allowed)
  assert.equal(checkUrl(viaPublic.target, viaPublic.judgedBy).allowed, false)
  // exempt origin → exempt origin: the exemptions still apply
  const fromExempt = checkRedirect(hop('http://images.internal/a'), 'http://127.0.0.2/b.png', list)
  assert.ok(fromExempt.allowed)
  assert.equal(checkUrl(fromExempt.target, fromExempt.judgedBy).allowed, true)
})
