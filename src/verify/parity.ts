import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Bundle } from '../bundle/load-bundle.ts'
import type { EncoderPool } from '../embedding/encoder-pool.ts'
import { FieldFeatures } from '../fusion/field-features.ts'
import type { Head } from '../fusion/head.ts'
import type { SplitHead } from '../fusion/split-head.ts'
import { ctrDistribution } from '../mdn/distribution.ts'
import { pixelsSha256, preprocessImage } from '../modalities/image/index.ts'
import type { FieldValues, PredictItem } from '../predict/types.ts'
import { DiffCollector } from './diff-stats.ts'
import { CtrError } from '../errors.ts'

export interface ParityFixture {
  readonly id: string
  readonly context: FieldValues
  readonly item: PredictItem
  readonly image_file: string
  readonly image_oov: boolean
  readonly text_oov: boolean
}

export interface ParityExpected {
  readonly id: string
  readonly pixels_sha256: string
  readonly input_ids: number[]
  readonly image_emb: number[]
  readonly text_emb: number[]
  readonly fields_emb: number[]
  readonly pi: number[]
  readonly mu: number[]
  readonly sigma: number[]
  readonly raw_mean: number
  readonly std: number
  readonly quantiles: Record<string, number>
  readonly mean: number
}

export interface ParityDeps {
  readonly bundle: Bundle
  readonly imagePool: Pick<EncoderPool, 'embedImages'>
  readonly textPool: Pick<EncoderPool, 'embedTexts'>
  readonly head: Pick<Head, 'run'>
  /** The bundle's split head (head.image_projection), checked against the expected outputs too. */
  readonly split?: Pick<SplitHead, 'project' | 'run' | 'dim'>
}

export interface ParityReport {
  readonly fixtures: number
  readonly pixelDigestMismatches: string[]
  readonly tokenMismatches: string[]
  readonly diffs: DiffCollector
}

export async function readJsonl<T>(path: string): Promise<T[]> {
  return (await readFile(path, 'utf8')).split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as T)
}

export async function loadParityFixtures(bundle: Bundle): Promise<{ fixtures: ParityFixture[]; expected: ParityExpected[] }> {
  const p = bundle.manifest.parity
  if (!p) throw new CtrError('BAD_BUNDLE', [bundle.dir, 'has no parity fixtures'])
  const fixtures = await readJsonl<ParityFixture>(join(bundle.dir, p.items))
  const expected = await readJsonl<ParityExpected>(join(bundle.dir, p.expected))
  if (fixtures.length !== expected.length) throw new CtrError('BAD_BUNDLE', [bundle.dir, `parity: ${fixtures.length} fixtures but ${expected.length} expected rows`])
  return { fixtures, expected }
}

/**
 * Recompute every stage the server runs from the fixtures' raw inputs (image bytes, titles, fields)
 * and collect element-wise differences against what PyTorch computed in training.
 */
export async function runParity(d: ParityDeps, batchSize = 32): Promise<ParityReport> {
  const { bundle } = d
  const m = bundle.manifest
  const { fixtures, expected } = await loadParityFixtures(bundle)
  const diffs = new DiffCollector()
  const pixelDigestMismatches: string[] = []
  const tokenMismatches: string[] = []
  const features = new FieldFeatures(bundle)
  const di = m.oov.image.dim
  const dt = m.oov.text.dim

  for (let s = 0; s < fixtures.length; s += batchSize) {
    const fx = fixtures.slice(s, s + batchSize)
    const ex = expected.slice(s, s + batchSize)
    const n = fx.length
    const per = 3 * m.encoders.image.input.height * m.encoders.image.input.width
    const pixels = new Float32Array(n * per)
    for (let i = 0; i < n; i++) {
      const f = fx[i] as ParityFixture
      const img = await preprocessImage(await readFile(join(bundle.dir, f.image_file)), m.encoders.image.input)
      pixels.set(img.tensor, i * per)
      if (pixelsSha256(img.pixels) !== (ex[i] as ParityExpected).pixels_sha256) pixelDigestMismatches.push(f.id)
    }
    const imageEmb = await d.imagePool.embedImages(n, pixels)
    const titles = fx.map((f) => f.item.title ?? '')
    const text = await d.textPool.embedTexts(titles)

    const x = {
      n,
      image: new Float32Array(n * di), imageOov: new Float32Array(n),
      text: new Float32Array(n * dt), textOov: new Float32Array(n),
      fields: new Float32Array(n * bundle.fieldsDim),
    }
    const unknown = new Set<string>()
    for (let i = 0; i < n; i++) {
      const f = fx[i] as ParityFixture
      const e = ex[i] as ParityExpected
      const ie = imageEmb.subarray(i * di, (i + 1) * di)
      const te = text.embeddings.subarray(i * dt, (i + 1) * dt)
      // For an OOV fixture the expected head input is the bundle's OOV vector, not an encoder output.
      if (f.image_oov) diffs.add('oov vectors', bundle.oov.image, e.image_emb)
      else diffs.add('image_emb', ie, e.image_emb)
      if (f.text_oov) diffs.add('oov vectors', bundle.oov.text, e.text_emb)
      else diffs.add('text_emb', te, e.text_emb)
      if (JSON.stringify(text.inputIds[i]) !== JSON.stringify(e.input_ids)) tokenMismatches.push(f.id)
      x.image.set(f.image_oov ? bundle.oov.image : ie, i * di)
      x.imageOov[i] = f.image_oov ? 1 : 0
      x.text.set(f.text_oov ? bundle.oov.text : te, i * dt)
      x.textOov[i] = f.text_oov ? 1 : 0
      features.fill(x.fields, i * bundle.fieldsDim, 'context', f.context, 'context', unknown)
      features.fill(x.fields, i * bundle.fieldsDim, 'item', f.item, 'item', unknown)
      diffs.add('fields_emb', x.fields.subarray(i * bundle.fieldsDim, (i + 1) * bundle.fieldsDim), e.fields_emb)
    }
    const out = await d.head.run(x)
    const k = m.mdn.k
    if (d.split) {
      // As scorer threads run it: every image projected, then the rest of the head.
      const imageProjection = await d.split.project(x.image, n)
      const parts = await d.split.run({ n, imageProjection, imageOov: x.imageOov, text: x.text, textOov: x.textOov, fields: x.fields })
      for (let i = 0; i < n; i++) {
        const e = ex[i] as ParityExpected
        diffs.add('pi (split head)', parts.pi.subarray(i * k, (i + 1) * k), e.pi)
        diffs.add('mu (split head)', parts.mu.subarray(i * k, (i + 1) * k), e.mu)
        diffs.add('sigma (split head)', parts.sigma.subarray(i * k, (i + 1) * k), e.sigma)
      }
    }
    for (let i = 0; i < n; i++) {
      const e = ex[i] as ParityExpected
      diffs.add('pi', out.pi.subarray(i * k, (i + 1) * k), e.pi)
      diffs.add('mu', out.mu.subarray(i * k, (i + 1) * k), e.mu)
      diffs.add('sigma', out.sigma.subarray(i * k, (i + 1) * k), e.sigma)
      const dist = ctrDistribution(m, out.pi, out.mu, out.sigma, i)
      diffs.add('raw_mean', [dist.raw_mean], [e.raw_mean])
      diffs.add('std', [dist.std], [e.std])
      const names = Object.keys(m.mdn.quantiles)
      diffs.add('quantiles', names.map((q) => dist.quantiles[q] as number), names.map((q) => e.quantiles[q] as number))
      diffs.add('mean (calibrated)', [dist.mean], [e.mean])
    }
  }
  return { fixtures: fixtures.length, pixelDigestMismatches, tokenMismatches, diffs }
}
