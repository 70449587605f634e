import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { build } from '../support/app.ts'
import { rng } from '../support/random.ts'

// Total RSS with the default configuration and a full L1 (issue 11 target: ≤ 1 GiB): the real app
// (default L1_MAX_BYTES, WEB_CONCURRENCY = CPU count, encoder workers, scorer threads) with its L1
// filled to its byte budget with image and text vectors under real cache keys, then 200 requests
// of 100 items served from it. The hit-path bench holds only 2000 items; this is the full budget.
//
//   node --max-semi-space-size=32 --import tsx bench/l1-full-rss.ts

const MiB = 1024 * 1024

async function main(): Promise<void> {
  const app = await build(undefined, { LOG_LEVEL: 'silent' })
  const rss0 = process.memoryUsage().rss
  const l1 = app.store.l1
  const m = app.bundle.manifest
  const r = rng(7)
  const urls: string[] = []
  for (let i = 0; l1.bytes < 0.99 * l1.maxBytes; i++) {
    const url = `https://img.example/${i}.jpg`
    urls.push(url)
    l1.set(app.keyOf('image', url), Float32Array.from({ length: m.oov.image.dim }, () => r() - 0.5))
    l1.set(app.keyOf('text', `title ${i}`), Float32Array.from({ length: m.oov.text.dim }, () => r() - 0.5))
    // Yield now and then: a long block would make load shedding (event-loop delay) refuse the requests below.
    if (i % 500 === 0) await new Promise((resolve) => setImmediate(resolve))
  }
  await new Promise((resolve) => setTimeout(resolve, 2000))
  const filled = process.memoryUsage().rss
  let ok = 0
  const sources: Record<string, number> = {}
  const statuses: Record<string, number> = {}
  for (let q = 0; q < 200; q++) {
    const items = Array.from({ length: 100 }, (_, j) => {
      const i = Math.floor(r() * urls.length)
      return { id: `${q}-${j}`, image_url: urls[i] as string, title: `title ${i}` }
    })
    const res = await app.inject({ method: 'POST', url: '/predict', payload: { items } })
    statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1
    const body = JSON.parse(res.body) as { predictions?: Array<{ sources: { image: string; text: string } }> }
    for (const p of body.predictions ?? []) for (const s of [p.sources.image, p.sources.text]) sources[s] = (sources[s] ?? 0) + 1
    if (res.statusCode === 200 && body.predictions?.every((p) => p.sources.image === 'l1' && p.sources.text === 'l1')) ok++
  }
  const after = process.memoryUsage().rss
  const result = {
    webConcurrency: app.config.WEB_CONCURRENCY, l1MaxMiB: l1.maxBytes / MiB, l1Entries: l1.size, l1MiB: Math.round(l1.bytes / MiB),
    rssStartMiB: Math.round(rss0 / MiB), rssFilledMiB: Math.round(filled / MiB), rssAfterRequestsMiB: Math.round(after / MiB),
    requestsAllL1: ok, statuses, sources, execArgv: process.execArgv.filter((a) => !a.includes('tsx')),
  }
  await app.close()
  mkdirSync('bench/results', { recursive: true })
  writeFileSync(join('bench/results', 'l1-full-rss.json'), `${JSON.stringify(result, null, 2)}\n`)
  process.stdout.write(`${JSON.stringify(result)}\n`)
}

await main()
