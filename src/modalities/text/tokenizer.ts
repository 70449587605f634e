import { basename, dirname, resolve } from 'node:path'
import { AutoTokenizer, env } from '@huggingface/transformers'

export interface TitleTokenizer {
  /** Token ids of one title: no special tokens, truncated to max length. */
  encode(title: string): number[]
}

/** Load the bundle's tokenizer.json from its local folder; never reaches a hub. */
export async function loadTokenizer(dir: string, maxLength: number): Promise<TitleTokenizer> {
  const abs = resolve(dir)
  env.allowRemoteModels = false
  env.allowLocalModels = true
  env.localModelPath = dirname(abs) + '/'
  const tok = await AutoTokenizer.from_pretrained(basename(abs), { local_files_only: true })
  return {
    encode: (title: string): number[] => {
      const ids = tok.encode(title, { add_special_tokens: false })
      return ids.slice(0, maxLength).map((x) => Number(x))
    },
  }
}
