// Standard normal CDF, double precision (Hart 1968, as given by G. West, "Better approximations to
// cumulative normal functions", 2005): absolute error below 1e-14, enough for quantile parity.

/**
 * Φ(−a) for a = |x| ≥ 0, given e = exp(−a²/2). Split out so the quantile solver, which also needs
 * the density (the same exponential), pays for one exp per component and step instead of two.
 */
export function normalTail(a: number, e: number): number {
  if (a > 37) return 0
  if (a < 7.07106781186547) {
    let n = 3.52624965998911e-2 * a + 0.700383064443688
    n = n * a + 6.37396220353165
    n = n * a + 33.912866078383
    n = n * a + 112.079291497871
    n = n * a + 221.213596169931
    n = n * a + 220.206867912376
    let d = 8.83883476483184e-2 * a + 1.75566716318264
    d = d * a + 16.064177579207
    d = d * a + 86.7807322029461
    d = d * a + 296.564248779674
    d = d * a + 637.333633378831
    d = d * a + 793.826512519948
    d = d * a + 440.413735824752
    return (e * n) / d
  }
  let b = a + 0.65
  b = a + 4 / b
  b = a + 3 / b
  b = a + 2 / b
  b = a + 1 / b
  return e / b / 2.506628274631
}

export function normalCdf(x: number): number {
  const a = Math.abs(x)
  const c = normalTail(a, Math.exp((-a * a) / 2))
  return x > 0 ? 1 - c : c
}
