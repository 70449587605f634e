import { join } from 'node:path'
import type { Bundle } from '../bundle/load-bundle.ts'
import { EncoderPool } from './encoder-pool.ts'
import type { EncoderWorkerData } from './encoder-protocol.ts'

export interface EncoderPools {
  readonly imagePool: EncoderPool
  readonly textPool: EncoderPool
}

/** The image and text encoder worker pools of a bundle, ready to run. */
export async function createEncoderPools(
  bundle: Bundle,
  opts: { imageWorkers: number; ortThreads: number; nice?: number; imageLoading?: EncoderWorkerData['imageLoading'] },
  log?: { warn(o: object, m: string): void },
): Promise<EncoderPools> {
  const enc = bundle.manifest.encoders
  const imagePool = new EncoderPool({
    kind: 'image', modelPath: join(bundle.dir, enc.image.file), intraOpThreads: opts.ortThreads, nice: opts.nice ?? 0,
    inputName: enc.image.input.name, outputName: enc.image.output.name, dim: enc.image.output.dim,
    imageShape: [3, enc.image.input.height, enc.image.input.width],
    ...(opts.imageLoading ? { imageLoading: opts.imageLoading } : {}),
  }, opts.imageWorkers, log)
  // Titles are cheap to embed: one text worker keeps up with several image workers.
  const textPool = new EncoderPool({
    kind: 'text', modelPath: join(bundle.dir, enc.text.file), intraOpThreads: opts.ortThreads, nice: opts.nice ?? 0,
    inputName: enc.text.inputs.input_ids, maskName: enc.text.inputs.attention_mask, outputName: enc.text.output.name,
    dim: enc.text.output.dim, tokenizerDir: join(bundle.dir, enc.text.tokenizer_dir), maxLength: enc.text.max_length,
    padId: enc.text.pad_id,
  }, 1, log)
  try {
    await Promise.all([imagePool.ready(), textPool.ready()])
  } catch (err) {
    await Promise.all([imagePool.close(), textPool.close()])
    throw err
  }
  return { imagePool, textPool }
}
