import type { Manifest } from '../bundle/manifest.ts'
import { calibrate } from './calibration.ts'
import { normalCdf, normalTail } from './normal-cdf.ts'

// The CTR statistics of every row of the head's outputs in one pass over the typed arrays: the hot
// path's largest share of CPU (27 % of the request thread before this module). Same formulas as
// docs/bundle-format.md "Mixture statistics"; see mixture-stats.ts for the one-item reference.

// Nodes whose weight is below this add at most their weight to a probability's expectation; for the
// 64-node rule the 24 dropped nodes weigh 2.6e-16 in all.
const MIN_NODE_WEIGHT = 1e-17
const INV_SQRT_PI = 1 / Math.sqrt(Math.PI)
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI)
// Past this |logit| the paired-sigmoid product form could overflow; such rows take the plain form.
const PAIRED_LIMIT = 600
const DEFAULT_BISECTION = { iterations: 100, span_sigmas: 10 }

/** Column of a row in the statistics output: mean (calibrated), raw_mean, std, then the quantiles. */
export const MEAN = 0
export const RAW_MEAN = 1
export const STD = 2
export const FIRST_QUANTILE = 3

export class MixtureStats {
  readonly k: number
  /** Quantile names in manifest order; column FIRST_QUANTILE + j holds quantileNames[j]. */
  readonly quantileNames: readonly string[]
  /** Values per row. */
  readonly width: number
  // Gauss–Hermite nodes are symmetric: x and −x share a weight, and sigmoid(μ ± s·x) share exp(−μ).
  private readonly pairX: Float64Array
  private readonly pairW: Float64Array
  private readonly nodes: Float64Array
  private readonly weights: Float64Array
  private readonly paired: boolean
  /** Quantile levels ascending, and the column each one goes to. */
  private readonly levels: Float64Array
  private readonly columns: Int32Array
  /** Φ⁻¹ of each level: first guesses from the normal with the mixture's mean and variance of z. */
  private readonly normalZ: Float64Array
  private readonly span: number
  private readonly iterations: number
  private readonly calibration: Manifest['calibration']

  constructor(manifest: Manifest) {
    const mdn = manifest.mdn
    this.k = mdn.k
    const kept = mdn.gauss_hermite.weights.map((w, i) => [mdn.gauss_hermite.nodes[i] as number, w] as const).filter(([, w]) => w >= MIN_NODE_WEIGHT)
    this.nodes = Float64Array.from(kept, ([x]) => x)
    this.weights = Float64Array.from(kept, ([, w]) => w * INV_SQRT_PI)
    const pos = kept.filter(([x]) => x > 0)
    this.paired = pos.length * 2 === kept.length && pos.every(([x, w]) => kept.some(([y, v]) => y === -x && Math.abs(v - w) <= 1e-15 * Math.max(w, 1e-300)))
    this.pairX = Float64Array.from(pos, ([x]) => x)
    this.pairW = Float64Array.from(pos, ([, w]) => w * INV_SQRT_PI)
    this.quantileNames = Object.keys(mdn.quantiles)
    const asc = this.quantileNames.map((name, j) => [mdn.quantiles[name] as number, j] as const).sort((a, b) => a[0] - b[0])
    this.levels = Float64Array.from(asc, ([q]) => q)
    this.columns = Int32Array.from(asc, ([, j]) => FIRST_QUANTILE + j)
    this.normalZ = this.levels.map(inverseNormalCdf)
    this.width = FIRST_QUANTILE + this.quantileNames.length
    const b = mdn.bisection ?? DEFAULT_BISECTION
    this.span = b.span_sigmas
    this.iterations = b.iterations
    this.calibration = manifest.calibration
  }

  /** Statistics of rows [0, n) of the head's outputs into `out` (n × width values). */
  compute(pi: Float32Array, mu: Float32Array, sigma: Float32Array, n: number, out: Float64Array): void {
    const k = this.k
    for (let i = 0; i < n; i++) {
      const o = i * this.width
      this.moments(pi, mu, sigma, i * k, out, o)
      out[o + MEAN] = calibrate(this.calibration, out[o + RAW_MEAN] as number)
      this.quantiles(pi, mu, sigma, i * k, out, o)
    }
  }

  /** raw_mean and std of one row by Gauss–Hermite quadrature over each component. */
  private moments(pi: Float32Array, mu: Float32Array, sigma: Float32Array, base: number, out: Float64Array, o: number): void {
    let m1 = 0
    let m2 = 0
    for (let c = base; c < base + this.k; c++) {
      const a = mu[c] as number
      const s = Math.SQRT2 * (sigma[c] as number)
      let e1 = 0
      let e2 = 0
      if (this.paired && Math.abs(a) < PAIRED_LIMIT && s * (this.pairX[this.pairX.length - 1] ?? 0) < PAIRED_LIMIT) {
        // sigmoid(a ± b) = 1 / (1 + exp(−a)·exp(∓b)): one exp per pair of nodes.
        const ea = Math.exp(-a)
        for (let j = 0; j < this.pairX.length; j++) {
          const f = Math.exp(-s * (this.pairX[j] as number))
          const p = 1 / (1 + ea * f)
          const q = 1 / (1 + ea / f)
          const w = this.pairW[j] as number
          e1 += w * (p + q)
          e2 += w * (p * p + q * q)
        }
      } else {
        for (let j = 0; j < this.nodes.length; j++) {
          const z = a + s * (this.nodes[j] as number)
          const p = z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z))
          const w = this.weights[j] as number
          e1 += w * p
          e2 += w * p * p
        }
      }
      const w = pi[c] as number
      m1 += w * e1
      m2 += w * e2
    }
    out[o + RAW_MEAN] = m1
    out[o + STD] = Math.sqrt(Math.max(0, m2 - m1 * m1))
  }

  /**
   * Quantiles of one row: roots of the mixture CDF in z, solved in ascending order (each root
   * bounds and seeds the next) by Newton steps kept inside a shrinking bisection bracket of
   * ±span_sigmas (manifest `mdn.bisection`), at most `iterations` steps; p = sigmoid(z).
   */
  private quantiles(pi: Float32Array, mu: Float32Array, sigma: Float32Array, base: number, out: Float64Array, o: number): void {
    const k = this.k
    let lo0 = Infinity
    let hi = -Infinity
    let zMean = 0
    let z2 = 0
    for (let c = base; c < base + k; c++) {
      const m = mu[c] as number
      const s = sigma[c] as number
      const w = pi[c] as number
      lo0 = Math.min(lo0, m - this.span * s)
      hi = Math.max(hi, m + this.span * s)
      zMean += w * m
      z2 += w * (s * s + m * m)
    }
    const zStd = Math.sqrt(Math.max(0, z2 - zMean * zMean))
    let prev = lo0
    for (let j = 0; j < this.levels.length; j++) {
      const q = this.levels[j] as number
      let lo = prev
      let top = hi
      // First guess: the quantile of the normal with the mixture's mean and variance of z (cuts the
      // steps from ~10 to ~4 on the parity fixtures); the bracket's middle when it falls outside.
      const guess = zMean + zStd * (this.normalZ[j] as number)
      let z = guess > lo && guess < top ? guess : 0.5 * (lo + top)
      for (let it = 0; it < this.iterations && top - lo > 1e-12; it++) {
        let cdf = 0
        let pdf = 0
        let slope = 0
        for (let c = base; c < base + k; c++) {
          const inv = 1 / (sigma[c] as number)
          const u = (z - (mu[c] as number)) * inv
          const a = Math.abs(u)
          const e = Math.exp(-0.5 * a * a)
          const t = normalTail(a, e)
          const w = pi[c] as number
          cdf += w * (u > 0 ? 1 - t : t)
          const d = w * e * inv
          pdf += d
          slope -= d * u * inv
        }
        pdf *= INV_SQRT_2PI
        slope *= INV_SQRT_2PI
        if (cdf < q) lo = z
        else top = z
        // Halley's step (the density's slope costs a multiply-add per component), Newton's when
        // the correction is not small.
        const newton = (cdf - q) / pdf
        const halley = 1 - (0.5 * newton * slope) / pdf
        const step = halley > 0.5 && halley < 2 ? newton / halley : newton
        // Converged: after a step of 1e-9 the error is below float64's resolution (cubic or
        // quadratic convergence). Tested before the bracket: a step below the root's ulp leaves
        // z on the bracket's edge, and the bisection fallback used to walk back from the middle
        // of the bracket (5.9 steps per quantile on the parity fixtures, 2.x now).
        if (Math.abs(step) <= 1e-9) {
          z -= step
          break
        }
        let next = z - step
        if (!(next > lo && next < top)) next = 0.5 * (lo + top)
        z = next
      }
      out[o + (this.columns[j] as number)] = z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z))
      prev = z
    }
  }
}

/** Φ⁻¹(q) by Newton on Φ (once per quantile level, at start-up). */
function inverseNormalCdf(q: number): number {
  let z = 0
  for (let i = 0; i < 100; i++) {
    const step = (normalCdf(z) - q) / (Math.exp(-0.5 * z * z) * INV_SQRT_2PI)
    z -= step
    if (Math.abs(step) < 1e-14) break
  }
  return z
}

const byManifest = new WeakMap<Manifest, MixtureStats>()

/** The statistics of a manifest's head (built once per manifest). */
export function mixtureStatsOf(manifest: Manifest): MixtureStats {
  let s = byManifest.get(manifest)
  if (!s) {
    s = new MixtureStats(manifest)
    byManifest.set(manifest, s)
  }
  return s
}
