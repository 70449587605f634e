import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

// Summarises a V8 .cpuprofile (node --cpu-prof): self time by function and by module, so a
// missed target comes with what dominated the server's CPU.

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
  children?: number[]
}
interface CpuProfile { nodes: ProfileNode[]; startTime: number; endTime: number; samples?: number[]; timeDeltas?: number[] }

export interface ProfileRow { name: string; selfMs: number; share: number }
export interface ProfileSummary { file: string; totalMs: number; idleShare: number; byFunction: ProfileRow[]; byModule: ProfileRow[] }

function moduleOf(url: string): string {
  if (url === '') return '(native / V8)'
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (nm) return nm[1] as string
  const src = /\/(src|bench)\/(.+)$/.exec(url)
  if (src) return `${src[1]}/${src[2]}`
  if (url.startsWith('node:')) return url
  return url.split('/').slice(-2).join('/')
}

export function summarizeProfile(file: string, top = 20): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const totalMs = (p.endTime - p.startTime) / 1000
  const totalHits = p.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0)
  const msPerHit = totalHits > 0 ? totalMs / totalHits : 0
  const byFn = new Map<string, number>()
  const byMod = new Map<string, number>()
  let idle = 0
  for (const n of p.nodes) {
    const hits = n.hitCount ?? 0
    if (hits === 0) continue
    const { functionName, url, lineNumber } = n.callFrame
    if (functionName === '(idle)') { idle += hits; continue }
    const mod = moduleOf(url)
    const name = `${functionName || '(anonymous)'} ${mod}${url ? `:${lineNumber + 1}` : ''}`
    byFn.set(name, (byFn.get(name) ?? 0) + hits)
    const modKey = functionName === '(garbage collector)' ? '(garbage collector)' : mod
    byMod.set(modKey, (byMod.get(modKey) ?? 0) + hits)
  }
  const busy = totalHits - idle
  const rows = (m: Map<string, number>): ProfileRow[] => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([name, hits]) => ({ name, selfMs: Math.round(hits * msPerHit), share: busy > 0 ? Math.round((hits / busy) * 1000) / 1000 : 0 }))
  return { file, totalMs: Math.round(totalMs), idleShare: totalHits > 0 ? Math.round((idle / totalHits) * 1000) / 1000 : 0, byFunction: rows(byFn), byModule: rows(byMod) }
}

/**
 * The main-thread profile in `dir`: --cpu-prof writes one file per thread
 * (CPU.<date>.<time>.<pid>.<thread-id>.<seq>.cpuprofile), the main thread has id 0; among several
 * processes the latest wins.
 */
export function latestProfile(dir: string): string | undefined {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))
  const main = files.filter((f) => f.split('.')[4] === '0').sort()
  const pick = main[main.length - 1] ?? files.sort()[files.length - 1]
  return pick ? join(dir, pick) : undefined
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const target = process.argv[2]
  if (!target) throw new Error('usage: tsx bench/profile-summary.ts <file.cpuprofile | dir>')
  const file = target.endsWith('.cpuprofile') ? target : latestProfile(target)
  if (!file) throw new Error(`${target}: no .cpuprofile`)
  const s = summarizeProfile(file)
  process.stdout.write(`${s.file}: ${s.totalMs} ms, idle ${(s.idleShare * 100).toFixed(1)}%\n`)
  process.stdout.write('self time by module (share of busy):\n')
  for (const r of s.byModule) process.stdout.write(`  ${(r.share * 100).toFixed(1).padStart(5)}%  ${r.selfMs} ms  ${r.name}\n`)
  process.stdout.write('self time by function:\n')
  for (const r of s.byFunction) process.stdout.write(`  ${(r.share * 100).toFixed(1).padStart(5)}%  ${r.selfMs} ms  ${r.name}\n`)
}
