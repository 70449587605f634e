// Reads ctrserve's /metrics (Prometheus text) into flat `name{labels}` → value maps and diffs them,
// so a scenario reports hit rates and sources over its own measured window only.

export type MetricMap = Map<string, number>

export async function scrape(base: string): Promise<MetricMap> {
  const res = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(30_000) })
  const text = await res.text()
  const out: MetricMap = new Map()
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.length === 0) continue
    const sp = line.lastIndexOf(' ')
    const v = Number(line.slice(sp + 1))
    if (Number.isFinite(v)) out.set(line.slice(0, sp), v)
  }
  return out
}

export function diff(before: MetricMap, after: MetricMap): MetricMap {
  const out: MetricMap = new Map()
  for (const [k, v] of after) out.set(k, v - (before.get(k) ?? 0))
  return out
}

function labelsOf(key: string): Record<string, string> {
  const m = /\{(.*)\}$/.exec(key)
  const out: Record<string, string> = {}
  if (!m) return out
  for (const part of (m[1] as string).matchAll(/(\w+)="([^"]*)"/g)) out[part[1] as string] = part[2] as string
  return out
}

/** Sum of a metric's series whose labels match `where`, grouped by label `by` (or '' for the total). */
export function sumBy(m: MetricMap, name: string, by: string | undefined, where: Record<string, string> = {}): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [k, v] of m) {
    if (!(k === name || k.startsWith(`${name}{`))) continue
    const l = labelsOf(k)
    if (!Object.entries(where).every(([wk, wv]) => l[wk] === wv)) continue
    const g = by ? (l[by] ?? '') : ''
    out[g] = (out[g] ?? 0) + v
  }
  return out
}

export interface CacheFigures {
  /** Share of L1 lookups that hit. */
  l1HitRate: number
  /** Share of L2 lookups (the L1 misses) that hit; NaN without L2 traffic. */
  l2HitRate: number
  /** Share of served embeddings by source, per modality. */
  sources: Record<string, Record<string, number>>
  /** Share of served (non-absent) embeddings that were OOV. */
  oovRate: number
  jobs: Record<string, number>
  fetchFailures: Record<string, number>
}

const ratio = (a: number, b: number): number => (b > 0 ? Math.round((a / b) * 10000) / 10000 : Number.NaN)

export function cacheFigures(d: MetricMap): CacheFigures {
  const l1 = sumBy(d, 'ctrserve_cache_lookups_total', 'result', { tier: 'l1' })
  const l2 = sumBy(d, 'ctrserve_cache_lookups_total', 'result', { tier: 'l2' })
  const sources: Record<string, Record<string, number>> = {}
  let served = 0
  let oov = 0
  for (const modality of ['image', 'text']) {
    const s = sumBy(d, 'ctrserve_embedding_sources_total', 'source', { modality })
    sources[modality] = s
    for (const [src, n] of Object.entries(s)) {
      if (src === 'absent') continue
      served += n
      if (src === 'oov') oov += n
    }
  }
  return {
    l1HitRate: ratio(l1.hit ?? 0, (l1.hit ?? 0) + (l1.miss ?? 0)),
    l2HitRate: ratio(l2.hit ?? 0, (l2.hit ?? 0) + (l2.miss ?? 0)),
    sources, oovRate: ratio(oov, served),
    jobs: sumBy(d, 'ctrserve_embedding_jobs_total', 'outcome'),
    fetchFailures: sumBy(d, 'ctrserve_image_fetch_failures_total', 'reason'),
  }
}

export async function queueDepth(base: string): Promise<number> {
  const m = await scrape(base)
  return Object.values(sumBy(m, 'ctrserve_queue_depth', undefined))[0] ?? 0
}
