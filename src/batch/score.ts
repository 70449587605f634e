import { CtrError } from '../errors.ts'
import type { PredictResult } from '../predict/predict-service.ts'
import type { FieldValues, PredictBody, PredictItem, Source } from '../predict/types.ts'
import type { Row } from './row-reader.ts'
import type { Checked, ScoreRow } from './rows.ts'

// The core of `ctrserve score`: rows → bodies of consecutive rows that share a context (one head
// run each, through PredictService.predict like POST /predict) → one JSON line per row with the
// fields of a /predict prediction ({id, ctr, sources}), in input order. At most `inFlight` bodies
// are being scored at once and every write waits for the output to drain: constant memory.

export interface ScoreDeps {
  readonly predict: (body: PredictBody) => Promise<PredictResult>
  readonly check: (value: unknown) => Checked<ScoreRow>
  /** Where the lines go; resolves when the text is accepted (after 'drain' when needed). */
  readonly write: (text: string) => Promise<void>
}

export interface ScoreOptions {
  /** Most rows in one body (one head run). */
  readonly batchSize: number
  /** This process scores the rows whose index % count == index. */
  readonly shard: { readonly index: number; readonly count: number }
  /** Bodies being scored at once (overlaps Redis round trips with head runs). */
  readonly inFlight: number
  readonly options: NonNullable<PredictBody['options']>
  /** Write `{"error":…}` lines for bad rows, in order (the parent of worker processes merges them). */
  readonly emitErrors: boolean
  readonly onRows?: (n: number) => void
}

type SourceCounts = Record<Source, number>

export interface ScoreSummary {
  /** Rows of this shard (scored + invalid). */
  rows: number
  scored: number
  invalid: number
  /** Up to 5 messages about invalid rows. */
  invalidExamples: string[]
  sources: { image: SourceCounts; text: SourceCounts }
  /** Distinct warnings of the model (unknown fields), at most 50. */
  warnings: string[]
  /** Head runs. */
  bodies: number
  seconds: number
}

const MAX_WARNINGS = 50
const MAX_EXAMPLES = 5

export function emptySources(): SourceCounts {
  return { l1: 0, l2: 0, computed: 0, oov: 0, absent: 0 }
}

/** The error line of a bad row, when `emitErrors` is on. */
export function errorLine(index: number, message: string): string {
  return `${JSON.stringify({ error: { row: index, message } })}\n`
}

/** Hit rate of one modality: served from L1 or L2 among the items that had an input. */
export function hitRate(c: SourceCounts): number {
  const asked = c.l1 + c.l2 + c.computed + c.oov
  return asked > 0 ? (c.l1 + c.l2) / asked : 0
}

interface Pending { context: FieldValues | undefined; ctxKey: string; items: PredictItem[]; indexes: number[] }

export async function score(rows: AsyncIterable<Row>, d: ScoreDeps, o: ScoreOptions): Promise<ScoreSummary> {
  const t0 = performance.now()
  const s: ScoreSummary = {
    rows: 0, scored: 0, invalid: 0, invalidExamples: [], sources: { image: emptySources(), text: emptySources() },
    warnings: [], bodies: 0, seconds: 0,
  }
  const warnings = new Set<string>()
  // Output segments in input order; each resolves to the text of one body or one bad row.
  const segments: Array<Promise<string>> = []

  const drainTo = async (limit: number): Promise<void> => {
    while (segments.length > limit) {
      const text = await (segments.shift() as Promise<string>)
      await d.write(text)
    }
  }

  const bad = (index: number, message: string): string => {
    s.invalid++
    if (s.invalidExamples.length < MAX_EXAMPLES) s.invalidExamples.push(message)
    o.onRows?.(1)
    return o.emitErrors ? errorLine(index, message) : ''
  }

  const scoreBody = async (p: Pending): Promise<string> => {
    const body: PredictBody = { ...(p.context ? { context: p.context } : {}), items: p.items, options: o.options }
    let result: PredictResult
    try {
      result = await d.predict(body)
    } catch (err) {
      // A value the schema lets through but the model refuses (a 400 of /predict): find the row(s).
      if (!(err instanceof CtrError && err.statusCode === 400) || p.items.length === 1) {
        if (err instanceof CtrError && err.statusCode === 400) return bad(p.indexes[0] as number, `row ${p.indexes[0]}: ${err.message}`)
        throw err
      }
      const parts: string[] = []
      for (let j = 0; j < p.items.length; j++) {
        parts.push(await scoreBody({ context: p.context, ctxKey: p.ctxKey, items: [p.items[j] as PredictItem], indexes: [p.indexes[j] as number] }))
      }
      return parts.join('')
    }
    s.bodies++
    let text = ''
    for (const pred of result.predictions) {
      s.sources.image[pred.sources.image]++
      s.sources.text[pred.sources.text]++
      text += `${JSON.stringify(pred)}\n`
    }
    for (const w of result.warnings) if (warnings.size < MAX_WARNINGS) warnings.add(w)
    s.scored += result.predictions.length
    o.onRows?.(result.predictions.length)
    return text
  }

  let pending: Pending | undefined
  const flush = async (): Promise<void> => {
    if (!pending) return
    const p = pending
    pending = undefined
    const text = scoreBody(p)
    // Awaited in order by drainTo; this only keeps a failure from counting as unhandled meanwhile.
    text.catch(() => undefined)
    segments.push(text)
    await drainTo(o.inFlight)
  }

  const { index: shardIndex, count: shardCount } = o.shard
  for await (const row of rows) {
    if (row.index % shardCount !== shardIndex) continue
    s.rows++
    const checked: Checked<ScoreRow> = row.error !== undefined ? { ok: false, error: row.error } : d.check(row.value)
    if (!checked.ok) {
      await flush()
      segments.push(Promise.resolve(bad(row.index, row.error !== undefined ? checked.error : `row ${row.index} (line ${row.line}): ${checked.error}`)))
      continue
    }
    const { context, item } = checked.value
    const ctxKey = context === undefined ? '' : JSON.stringify(context)
    if (pending && (pending.ctxKey !== ctxKey || pending.items.length >= o.batchSize)) await flush()
    pending ??= { context, ctxKey, items: [], indexes: [] }
    pending.items.push(item)
    pending.indexes.push(row.index)
  }
  await flush()
  await drainTo(0)
  s.warnings = [...warnings]
  s.seconds = (performance.now() - t0) / 1000
  return s
}
