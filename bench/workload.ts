import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { pathToFileURL } from 'node:url'
import { num, parseArgs, str } from './lib/args.ts'
import { type PredictBody, type PredictItem, type Sample, itemVariant, loadSample } from './lib/sample.ts'
import { rng } from '../support/random.ts'

export { rng }

// Workload generator: request bodies with Zipf item popularity over the sample, a share of
// never-seen items (new image URL + new title variant each time), N candidates per request and
// contexts from the sample. Bodies go to a JSONL file that the load driver replays in order.

export interface WorkloadSpec {
  readonly requests: number
  readonly itemsPerRequest: number
  /** Zipf exponent of item popularity; 0 = uniform. */
  readonly zipfS: number
  /** Share of candidate slots filled with a never-seen item. */
  readonly newShare: number
  /** First variant number used for never-seen items (keep ranges disjoint between workloads). */
  readonly newBase: number
  /** Draw from `variants` pre-existing variants (1..variants) instead of the sample items themselves. */
  readonly variants?: number
  readonly originBase: string
  readonly seed: number
  readonly options?: PredictBody['options']
}

export interface WorkloadStats {
  readonly requests: number
  readonly items: number
  readonly newItems: number
  readonly distinctSeen: number
}

/** Sampler of ranks 0..n-1 with P(r) ∝ 1/(r+1)^s by inverse CDF (binary search). */
export function zipfSampler(n: number, s: number, rand: () => number): () => number {
  const cdf = new Float64Array(n)
  let acc = 0
  for (let r = 0; r < n; r++) { acc += 1 / Math.pow(r + 1, s); cdf[r] = acc }
  return () => {
    const u = rand() * acc
    let lo = 0
    let hi = n - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if ((cdf[mid] as number) < u) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

export function generateWorkload(sample: Sample, spec: WorkloadSpec): { bodies: PredictBody[]; stats: WorkloadStats } {
  const rand = rng(spec.seed)
  const population = spec.variants ?? sample.items.length
  // Popularity ranks are a seeded permutation of the population, so rank 0 is not always item 0.
  const perm = Array.from({ length: population }, (_, i) => i)
  for (let i = perm.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    const t = perm[i] as number
    perm[i] = perm[j] as number
    perm[j] = t
  }
  const draw = zipfSampler(population, spec.zipfS, rand)
  const n = Math.min(spec.itemsPerRequest, population)
  const seen = new Set<number>()
  let nextNew = spec.newBase
  let newItems = 0
  const bodies: PredictBody[] = []
  for (let r = 0; r < spec.requests; r++) {
    const chosen = new Set<number>()
    const items: PredictItem[] = []
    for (let k = 0; k < n; k++) {
      if (rand() < spec.newShare) {
        const base = sample.items[Math.floor(rand() * sample.items.length)] as PredictItem
        items.push(itemVariant(base, nextNew++, spec.originBase))
        newItems++
        continue
      }
      // Distinct items within one candidate list; bounded retries, then the next free rank.
      let p = perm[draw()] as number
      for (let tries = 0; chosen.has(p) && tries < 64; tries++) p = perm[draw()] as number
      while (chosen.has(p)) p = (p + 1) % population
      chosen.add(p)
      seen.add(p)
      if (spec.variants === undefined) items.push(itemVariant(sample.items[p] as PredictItem, 0, spec.originBase))
      else items.push(itemVariant(sample.items[p % sample.items.length] as PredictItem, p + 1, spec.originBase))
    }
    const context = sample.contexts[Math.floor(rand() * sample.contexts.length)]
    const body: PredictBody = { ...(context ? { context } : {}), items }
    if (spec.options) body.options = spec.options
    bodies.push(body)
  }
  return { bodies, stats: { requests: bodies.length, items: bodies.length * n, newItems, distinctSeen: seen.size } }
}

export function writeBodies(path: string, bodies: readonly PredictBody[]): void {
  mkdirSync(dirname(path), { recursive: true })
  writeFileSync(path, bodies.map((b) => JSON.stringify(b)).join('\n') + '\n')
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const sample = loadSample(str(args, 'sample', 'fixtures/sample'))
  const variants = args.get('variants')
  const { bodies, stats } = generateWorkload(sample, {
    requests: num(args, 'requests', 2000),
    itemsPerRequest: num(args, 'items', 100),
    zipfS: num(args, 'zipf', 1.0),
    newShare: num(args, 'new-share', 0.01),
    newBase: num(args, 'new-base', 1_000_000),
    ...(variants ? { variants: Number(variants) } : {}),
    originBase: str(args, 'origin', 'http://127.0.0.1:8099'),
    seed: num(args, 'seed', 1),
  })
  const out = str(args, 'out')
  writeBodies(out, bodies)
  process.stdout.write(`${JSON.stringify({ out, ...stats })}\n`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main()
