import type { NumericField } from '../bundle/manifest.ts'

/** Table row of a numeric value: 0 is the missing row, else 1 + bisect_right(edges, x). */
export function numericRow(field: Pick<NumericField, 'edges'>, x: number): number {
  const edges = field.edges
  let lo = 0
  let hi = edges.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (x < (edges[mid] as number)) hi = mid
    else lo = mid + 1
  }
  return 1 + lo
}
