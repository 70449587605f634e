import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { calibrate } from '../src/mdn/calibration.ts'
import { mixtureCdfZ, mixtureMoments, mixtureQuantile, type Mixture } from '../src/mdn/mixture-stats.ts'
import { normalCdf } from '../src/mdn/normal-cdf.ts'
import type { Manifest } from '../src/bundle/manifest.ts'
import { BUNDLE_DIR } from '../support/bundle.ts'
import { rng } from '../support/random.ts' // seeded mulberry32: failures reproduce

const manifest = JSON.parse(readFileSync(`${BUNDLE_DIR}/manifest.json`, 'utf8')) as Manifest
const gh = manifest.mdn.gauss_hermite

function randomMixture(r: () => number, k: number): Mixture {
  const w = Array.from({ length: k }, () => 0.05 + r())
  const s = w.reduce((a, b) => a + b, 0)
  return {
    pi: w.map((x) => x / s),
    mu: Array.from({ length: k }, () => -6 + 5 * r()),
    sigma: Array.from({ length: k }, () => 0.05 + 1.2 * r()),
  }
}

/** Independent reference: composite Simpson integration of sigmoid(z)^j against the mixture density. */
function integrate(m: Mixture, power: 1 | 2): number {
  const lo = -40
  const hi = 25
  const n = 200_000
  const h = (hi - lo) / n
  const f = (z: number): number => {
    let dens = 0
    for (let k = 0; k < m.pi.length; k++) {
      const s = m.sigma[k] as number
      const u = (z - (m.mu[k] as number)) / s
      dens += ((m.pi[k] as number) * Math.exp(-0.5 * u * u)) / (s * Math.sqrt(2 * Math.PI))
    }
    return (1 / (1 + Math.exp(-z))) ** power * dens
  }
  let acc = f(lo) + f(hi)
  for (let i = 1; i < n; i++) acc += (i % 2 === 1 ? 4 : 2) * f(lo + i * h)
  return (acc * h) / 3
}

test('mixture mean and std match direct numerical integration within 1e-6', () => {
  const r = rng(7)
  let worstMean = 0
  let worstStd = 0
  for (let t = 0; t < 40; t++) {
    const m = randomMixture(r, manifest.mdn.k)
    const { mean, std } = mixtureMoments(m, gh)
    const e1 = integrate(m, 1)
    const e2 = integrate(m, 2)
    worstMean = Math.max(worstMean, Math.abs(mean - e1))
    worstStd = Math.max(worstStd, Math.abs(std - Math.sqrt(e2 - e1 * e1)))
  }
  assert.ok(worstMean <= 1e-6, `worst |Δmean| = ${worstMean}`)
  assert.ok(worstStd <= 1e-6, `worst |Δstd| = ${worstStd}`)
})

test('quantiles invert the mixture CDF and are ordered', () => {
  const r = rng(11)
  for (let t = 0; t < 40; t++) {
    const m = randomMixture(r, manifest.mdn.k)
    let prev = 0
    for (const q of [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]) {
      const p = mixtureQuantile(m, q)
      const z = Math.log(p / (1 - p))
      assert.ok(Math.abs(mixtureCdfZ(m, z) - q) <= 1e-9, `F(z_q) = ${mixtureCdfZ(m, z)} for q = ${q}`)
      assert.ok(p > prev, 'quantiles increase with q')
      prev = p
    }
  }
})

test('a one-component mixture has the logit-normal median sigmoid(mu)', () => {
  const m = { pi: [1], mu: [-3.2], sigma: [0.7] }
  assert.ok(Math.abs(mixtureQuantile(m, 0.5) - 1 / (1 + Math.exp(3.2))) <= 1e-12)
})

test('normal CDF: symmetry and known values', () => {
  assert.ok(Math.abs(normalCdf(0) - 0.5) <= 1e-15)
  assert.ok(Math.abs(normalCdf(1.959963984540054) - 0.975) <= 1e-12)
  assert.ok(Math.abs(normalCdf(-1.2) + normalCdf(1.2) - 1) <= 1e-15)
  assert.ok(normalCdf(-40) >= 0 && normalCdf(-40) < 1e-300)
})

test('calibration interpolates, clamps at the ends and is monotone on the bundle table', () => {
  const t = { x: [0.01, 0.02, 0.04], y: [0.012, 0.018, 0.05] }
  assert.equal(calibrate(t, 0.001), 0.012)
  assert.equal(calibrate(t, 0.5), 0.05)
  assert.ok(Math.abs(calibrate(t, 0.015) - 0.015) <= 1e-15)
  assert.ok(Math.abs(calibrate(t, 0.03) - 0.034) <= 1e-15)
  const c = manifest.calibration
  let prev = -Infinity
  for (let v = 0; v <= 0.3; v += 0.0005) {
    const y = calibrate(c, v)
    assert.ok(y >= prev - 1e-15, `calibration decreases at ${v}`)
    prev = y
  }
})

test('the batch statistics of the hot path match the one-item reference (moments 1e-12, quantiles 1e-13)', async () => {
  const { mixtureStatsOf, RAW_MEAN, STD, FIRST_QUANTILE, MEAN } = await import('../src/mdn/batch-stats.ts')
  const stats = mixtureStatsOf(manifest)
  const r = rng(23)
  const n = 200
  const k = manifest.mdn.k
  const ms = Array.from({ length: n }, () => randomMixture(r, k))
  const flat = (f: (m: Mixture) => ArrayLike<number>): Float32Array => Float32Array.from(ms.flatMap((m) => Array.from(f(m))))
  const pi = flat((m) => m.pi)
  const mu = flat((m) => m.mu)
  const sigma = flat((m) => m.sigma)
  const out = new Float64Array(n * stats.width)
  stats.compute(pi, mu, sigma, n, out)
  const worst = { moments: 0, quantiles: 0 }
  for (let i = 0; i < n; i++) {
    // The reference on the same float32 values the batch saw.
    const m = { pi: pi.subarray(i * k, i * k + k), mu: mu.subarray(i * k, i * k + k), sigma: sigma.subarray(i * k, i * k + k) }
    const ref = mixtureMoments(m, gh)
    const o = i * stats.width
    worst.moments = Math.max(worst.moments, Math.abs((out[o + RAW_MEAN] as number) - ref.mean), Math.abs((out[o + STD] as number) - ref.std))
    assert.equal(out[o + MEAN], calibrate(manifest.calibration, out[o + RAW_MEAN] as number))
    stats.quantileNames.forEach((name, j) => {
      // The reference bisects to 1e-14 in z; the hot path stops at a Halley step of 1e-9, which
      // leaves it nearer than that (before a stopping bug was fixed it was off by up to 1e-10).
      const p = mixtureQuantile(m, manifest.mdn.quantiles[name] as number, 1e-14)
      worst.quantiles = Math.max(worst.quantiles, Math.abs((out[o + FIRST_QUANTILE + j] as number) - p))
    })
  }
  assert.ok(worst.moments <= 1e-12, `worst moment |Δ| = ${worst.moments}`)
  assert.ok(worst.quantiles <= 1e-13, `worst quantile |Δ| = ${worst.quantiles}`)
})
