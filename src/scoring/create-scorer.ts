import type { Head } from '../fusion/head.ts'
import { mixtureStatsOf } from '../mdn/batch-stats.ts'
import { PredictionsJson } from '../predict/predictions-json.ts'
import { InlineScorer, type Scorer } from './scorer.ts'
import { ScorerPool, type ScorerBundle, type SharedSlabs } from './scorer-pool.ts'

/**
 * WEB_CONCURRENCY = 1: score on the request thread (the behaviour before issue 11). N > 1: N − 1
 * scorer threads, the request thread being the N-th busy thread (README "Every core").
 */
export async function createScorer(
  bundle: ScorerBundle, head: Pick<Head, 'runWith'>, opts: { concurrency: number; intraOpThreads: number; slabs?: SharedSlabs },
  log?: { warn(o: object, m: string): void },
): Promise<Scorer> {
  const stats = mixtureStatsOf(bundle.manifest)
  if (opts.concurrency <= 1) return new InlineScorer(head, stats, new PredictionsJson(stats))
  const pool = new ScorerPool(bundle, opts.concurrency - 1, opts.intraOpThreads, log, opts.slabs)
  try {
    await pool.ready()
  } catch (err) {
    await pool.close()
    throw err
  }
  return pool
}
