import type { Manifest } from '../bundle/manifest.ts'
import type { CtrDistribution } from '../predict/types.ts'
import { calibrate } from './calibration.ts'
import { mixtureMoments, mixtureQuantile } from './mixture-stats.ts'

/** The CTR distribution of row `i` of the head's outputs: moments, quantiles, calibrated mean. */
export function ctrDistribution(manifest: Manifest, pi: Float32Array, mu: Float32Array, sigma: Float32Array, i: number): CtrDistribution {
  const k = manifest.mdn.k
  const m = { pi: pi.subarray(i * k, i * k + k), mu: mu.subarray(i * k, i * k + k), sigma: sigma.subarray(i * k, i * k + k) }
  const { mean, std } = mixtureMoments(m, manifest.mdn.gauss_hermite)
  const quantiles: Record<string, number> = {}
  for (const [name, q] of Object.entries(manifest.mdn.quantiles)) quantiles[name] = mixtureQuantile(m, q)
  const components = []
  for (let j = 0; j < k; j++) {
    components.push({ weight: m.pi[j] as number, mu: m.mu[j] as number, sigma: m.sigma[j] as number })
  }
  return { mean: calibrate(manifest.calibration, mean), raw_mean: mean, std, quantiles, components }
}
