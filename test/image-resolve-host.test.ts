// Name resolution for image fetches runs on c-ares, not on libuv's thread pool: a DNS server that
// never answers must not delay file I/O or sharp, and ends as a transient `dns` failure.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket, type Socket } from 'node:dgram'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHostResolver } from '../src/modalities/image/resolve-host.ts'

interface DnsServer { readonly address: string; queries: number; close(): Promise<void> }

/** A real UDP DNS server on 127.0.0.1: A records from `answers`, NXDOMAIN for other names, or silence. */
async function startDns(answers: Record<string, string> | 'silent'): Promise<DnsServer> {
  const socket: Socket = createSocket('udp4')
  const state = { address: '', queries: 0, close: () => new Promise<void>((r) => socket.close(() => r())) }
  socket.on('message', (msg, peer) => {
    state.queries++
    if (answers === 'silent') return
    let at = 12
    const labels: string[] = []
    while ((msg[at] ?? 0) !== 0) { const n = msg[at] as number; labels.push(msg.subarray(at + 1, at + 1 + n).toString()); at += n + 1 }
    const qtype = msg.readUInt16BE(at + 1)
    const question = msg.subarray(12, at + 5)
    const ip = answers[labels.join('.').toLowerCase()]
    const header = Buffer.alloc(12)
    msg.copy(header, 0, 0, 2)
    header.writeUInt16BE(ip === undefined ? 0x8183 : 0x8180, 2) // response, RD+RA, NOERROR / NXDOMAIN
    header.writeUInt16BE(1, 4)
    const record = ip !== undefined && qtype === 1
      ? Buffer.concat([Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]), Buffer.from(ip.split('.').map(Number))])
      : Buffer.alloc(0)
    header.writeUInt16BE(record.length > 0 ? 1 : 0, 6)
    socket.send(Buffer.concat([header, question, record]), peer.port, peer.address)
  })
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r))
  state.address = `127.0.0.1:${socket.address().port}`
  return state
}

test('A answers come from the DNS server, unknown names are ENOTFOUND, /etc/hosts-style files come first', async (t) => {
  const dns = await startDns({ 'img.test': '127.0.0.2' })
  t.after(() => dns.close())
  const dir = mkdtempSync(join(tmpdir(), 'hosts-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const hostsFile = join(dir, 'hosts')
  writeFileSync(hostsFile, '# comment\n127.0.0.1 localhost\n::1 localhost ip6-localhost\n10.0.0.7 Pinned.Test # trailing\n')
  const resolve = createHostResolver({ timeoutMs: 2000, tries: 1, servers: [dns.address], hostsFile })

  assert.deepEqual(await resolve('img.test'), [{ address: '127.0.0.2', family: 4 }])
  assert.deepEqual(await resolve('IMG.test.'), [{ address: '127.0.0.2', family: 4 }])
  await assert.rejects(resolve('nope.test'), (err: NodeJS.ErrnoException) => err.code === 'ENOTFOUND')
  const before = dns.queries
  assert.deepEqual(await resolve('localhost'), [{ address: '127.0.0.1', family: 4 }, { address: '::1', family: 6 }])
  assert.deepEqual(await resolve('pinned.test'), [{ address: '10.0.0.7', family: 4 }])
  assert.equal(dns.queries, before, 'names in the hosts file never reach DNS')
})

test('a DNS server that never answers stalls neither the thread pool nor the caller past its timeout', async (t) => {
  const dns = await startDns('silent')
  t.after(() => dns.close())
  const resolve = createHostResolver({ timeoutMs: 400, tries: 1, servers: [dns.address], hostsFile: '/nonexistent' })
  const order: string[] = []
  // Eight pending lookups: with getaddrinfo, four of them would occupy libuv's whole 4-thread pool.
  const lookups = Array.from({ length: 8 }, (_, i) => resolve(`slow${i}.test`).then(
    () => order.push('resolved'),
    (err: NodeJS.ErrnoException) => order.push(`lookup ${err.code ?? 'error'}`),
  ))
  const fileReads = Array.from({ length: 8 }, () => readFile(new URL(import.meta.url)).then(() => order.push('file')))
  await Promise.all([...lookups, ...fileReads])
  assert.deepEqual(order.slice(0, 8), Array(8).fill('file'), 'file reads (thread pool) finish before any lookup')
  assert.deepEqual(order.slice(8), Array(8).fill('lookup ETIMEOUT'), 'every lookup ends in a timeout')
  assert.ok(dns.queries >= 8, `the server saw the queries (${dns.queries})`)
})
