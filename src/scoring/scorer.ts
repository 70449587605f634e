import type { Head, HeadInputs } from '../fusion/head.ts'
import type { MixtureStats } from '../mdn/batch-stats.ts'
import type { PredictionsJson, RowMeta, ScoredRows } from '../predict/predictions-json.ts'

// Scoring = the head's run + the mixture statistics (+ the predictions JSON): the CPU-heavy end of
// a request. InlineScorer does it on the request thread; ScorerPool (scorer-pool.ts) in threads.

export interface Scored extends ScoredRows {
  readonly headMs: number
  readonly statsMs: number
}

export interface ScoredJson {
  /**
   * The response's `predictions` array as UTF-8 JSON (from a scorer thread they arrive by transfer:
   * the request thread neither copies nor encodes them to send them).
   */
  readonly json: Uint8Array
  readonly headMs: number
  readonly statsMs: number
}

/**
 * The head's inputs as a scorer takes them. With `refs` (scorer threads), a row whose cached vector
 * is in shared memory (vector-slabs.ts) is not written by the request thread: refs holds [slab,
 * offset in floats] per row, image rows first then text rows, and the scorer thread copies the
 * vector in; slab −1 means the row was written in `image` / `text`.
 */
export interface ScorerInputs extends HeadInputs {
  readonly refs?: Int32Array
}

export interface Scorer {
  /** Head + statistics on n rows written by `fill` (which must write every input element). */
  score(n: number, fill: (x: ScorerInputs) => void): Promise<Scored>
  /** Same, serialised: the predictions JSON of the rows, with their ids and sources. */
  scoreJson(n: number, fill: (x: ScorerInputs) => void, meta: RowMeta): Promise<ScoredJson>
  /** Expected wait, ms, before a call made now would start (requests queued ahead × their recent time). */
  backlogMs(): number
  close(): Promise<void>
}

/** Head, statistics and JSON of one batch of inputs: what every scorer (thread or not) runs. */
export async function scoreInputs(head: Pick<Head, 'run'>, stats: MixtureStats, x: HeadInputs): Promise<Scored> {
  const t0 = performance.now()
  const out = await head.run(x)
  const t1 = performance.now()
  const rows = new Float64Array(x.n * stats.width)
  stats.compute(out.pi, out.mu, out.sigma, x.n, rows)
  return { n: x.n, rows, pi: out.pi, mu: out.mu, sigma: out.sigma, headMs: t1 - t0, statsMs: performance.now() - t1 }
}

/** Scores on the calling thread, through the head's shared input buffers (WEB_CONCURRENCY=1). */
export class InlineScorer implements Scorer {
  constructor(private readonly head: Pick<Head, 'runWith'>, private readonly stats: MixtureStats, private readonly json: PredictionsJson) {}

  async score(n: number, fill: (x: HeadInputs) => void): Promise<Scored> {
    const t0 = performance.now()
    const out = await this.head.runWith(n, fill)
    const t1 = performance.now()
    const rows = new Float64Array(n * this.stats.width)
    this.stats.compute(out.pi, out.mu, out.sigma, n, rows)
    return { n, rows, pi: out.pi, mu: out.mu, sigma: out.sigma, headMs: t1 - t0, statsMs: performance.now() - t1 }
  }

  async scoreJson(n: number, fill: (x: HeadInputs) => void, meta: RowMeta): Promise<ScoredJson> {
    const s = await this.score(n, fill)
    const t = performance.now()
    const json = this.json.write(s, meta)
    return { json, headMs: s.headMs, statsMs: s.statsMs + performance.now() - t }
  }

  /** 0: on the request thread a backlog shows as event-loop delay, which load shedding watches. */
  backlogMs(): number {
    return 0
  }

  async close(): Promise<void> {}
}
