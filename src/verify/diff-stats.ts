import { CtrError } from '../errors.ts'
/** Summary of element-wise absolute differences between two sets of numbers. */
export interface DiffStats {
  count: number
  mean: number
  std: number
  p25: number
  p50: number
  p75: number
  p99: number
  max: number
}

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0
  const pos = (sorted.length - 1) * q
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (pos - lo)
}

export function diffStats(absDiffs: readonly number[]): DiffStats {
  const a = Float64Array.from(absDiffs).sort()
  const n = a.length
  let s = 0
  for (const v of a) s += v
  const mean = n > 0 ? s / n : 0
  let v2 = 0
  for (const v of a) v2 += (v - mean) ** 2
  return {
    count: n, mean, std: n > 1 ? Math.sqrt(v2 / (n - 1)) : 0,
    p25: quantile(a, 0.25), p50: quantile(a, 0.5), p75: quantile(a, 0.75), p99: quantile(a, 0.99), max: n > 0 ? (a[n - 1] as number) : 0,
  }
}

/** Collects |a - b| per named output. */
export class DiffCollector {
  readonly diffs = new Map<string, number[]>()

  add(name: string, a: ArrayLike<number>, b: ArrayLike<number>): void {
    if (a.length !== b.length) throw new CtrError('BAD_INPUT', [`${name}: length ${a.length} vs ${b.length}`])
    const list = this.diffs.get(name) ?? []
    for (let i = 0; i < a.length; i++) list.push(Math.abs((a[i] as number) - (b[i] as number)))
    this.diffs.set(name, list)
  }

  table(): Array<{ output: string } & DiffStats> {
    return [...this.diffs.entries()].map(([output, d]) => ({ output, ...diffStats(d) }))
  }
}

export function formatTable(rows: ReadonlyArray<{ output: string } & DiffStats>): string {
  const cols = ['count', 'mean', 'std', 'p25', 'p50', 'p75', 'p99', 'max'] as const
  const fmt = (v: number, c: string): string => (c === 'count' ? String(v) : v.toExponential(2))
  const header = `| output | ${cols.join(' | ')} |`
  const sep = `|---|${cols.map(() => '---:').join('|')}|`
  const lines = rows.map((r) => `| ${r.output} | ${cols.map((c) => fmt(r[c], c)).join(' | ')} |`)
  return [header, sep, ...lines].join('\n')
}
