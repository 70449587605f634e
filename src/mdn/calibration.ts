/** Isotonic calibration as a piecewise-linear table, clamped at the ends (numpy.interp semantics). */
export interface CalibrationTable {
  readonly x: readonly number[]
  readonly y: readonly number[]
}

export function calibrate(table: CalibrationTable, v: number): number {
  const { x, y } = table
  const n = x.length
  if (n === 0) return v
  if (v <= (x[0] as number)) return y[0] as number
  if (v >= (x[n - 1] as number)) return y[n - 1] as number
  // Largest i with x[i] <= v (binary search); the table is sorted ascending.
  let lo = 0
  let hi = n - 1
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1
    if ((x[mid] as number) <= v) lo = mid
    else hi = mid
  }
  const x0 = x[lo] as number
  const x1 = x[hi] as number
  const y0 = y[lo] as number
  const y1 = y[hi] as number
  return x1 === x0 ? y1 : y0 + ((v - x0) * (y1 - y0)) / (x1 - x0)
}
