import type { Manifest } from '../bundle/manifest.ts'
import type { CtrDistribution } from '../predict/types.ts'
import { float32Number } from '../util/json-bytes.ts'
import { FIRST_QUANTILE, MEAN, RAW_MEAN, STD, type MixtureStats, mixtureStatsOf } from './batch-stats.ts'

/** Row `i` of a statistics block (MixtureStats.compute) and the head's outputs as a CtrDistribution. */
export function distributionAt(stats: MixtureStats, rows: Float64Array, pi: Float32Array, mu: Float32Array, sigma: Float32Array, i: number): CtrDistribution {
  const o = i * stats.width
  const quantiles: Record<string, number> = {}
  stats.quantileNames.forEach((name, j) => { quantiles[name] = rows[o + FIRST_QUANTILE + j] as number })
  const components = []
  for (let c = i * stats.k; c < (i + 1) * stats.k; c++) {
    // As the response writes them (predictions-json.ts): the float32's shortest decimal.
    components.push({ weight: float32Number(pi[c] as number), mu: float32Number(mu[c] as number), sigma: float32Number(sigma[c] as number) })
  }
  return { mean: rows[o + MEAN] as number, raw_mean: rows[o + RAW_MEAN] as number, std: rows[o + STD] as number, quantiles, components }
}

/** The CTR distribution of row `i` of the head's outputs: moments, quantiles, calibrated mean. */
export function ctrDistribution(manifest: Manifest, pi: Float32Array, mu: Float32Array, sigma: Float32Array, i: number): CtrDistribution {
  const stats = mixtureStatsOf(manifest)
  const k = stats.k
  const rows = new Float64Array(stats.width)
  const row = { pi: pi.subarray(i * k, i * k + k), mu: mu.subarray(i * k, i * k + k), sigma: sigma.subarray(i * k, i * k + k) }
  stats.compute(row.pi, row.mu, row.sigma, 1, rows)
  return distributionAt(stats, rows, row.pi, row.mu, row.sigma, 0)
}
