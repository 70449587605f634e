// A small streaming CSV reader (RFC 4180: comma separated, double-quoted fields, "" escapes,
// newlines inside quotes, CRLF or LF) and the mapping of a header row onto the /predict shapes.
// Hand-written because no CSV parser is a dependency and this one is a few dozen lines.
import { CtrError } from '../errors.ts'

/** Splits a stream of text chunks into records (arrays of fields), keeping memory to one record. */
export async function* csvRecords(chunks: AsyncIterable<string>): AsyncGenerator<string[]> {
  let field = ''
  let record: string[] = []
  let quoted = false
  let afterQuote = false
  let pendingCr = false
  let any = false
  for await (const chunk of chunks) {
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i] as string
      if (quoted) {
        if (c === '"') { quoted = false; afterQuote = true } else field += c
        continue
      }
      if (pendingCr) {
        pendingCr = false
        if (c === '\n') continue
      }
      if (c === '"') {
        // A quote right after a closing quote is an escaped quote ("" inside a quoted field).
        if (afterQuote) field += '"'
        quoted = true
        afterQuote = false
        any = true
      } else if (c === ',') {
        record.push(field); field = ''; afterQuote = false; any = true
      } else if (c === '\n' || c === '\r') {
        if (c === '\r') pendingCr = true
        if (any || field.length > 0) { record.push(field); yield record }
        record = []; field = ''; afterQuote = false; any = false
      } else {
        field += c; afterQuote = false; any = true
      }
    }
  }
  if (quoted) throw new CtrError('BAD_INPUT', ['CSV input ends inside a quoted field'])
  if (any || field.length > 0) { record.push(field); yield record }
}

/**
 * One CSV record as an object: each header is a dotted path (`id`, `image_url`, `title`,
 * `categorical.publisher`, `numeric.age_hours`, `context.categorical.device`, …). An empty cell is
 * a missing value; a cell under `numeric` is a number; a cell starting with `[` or `{` is JSON
 * (multi-valued fields: `["cars","suv"]`); anything else is a string.
 */
export function csvRowObject(header: readonly string[], cells: readonly string[]): Record<string, unknown> {
  if (cells.length !== header.length) {
    throw new CtrError('BAD_INPUT', [`has ${cells.length} fields, the header has ${header.length}`])
  }
  const out: Record<string, unknown> = {}
  header.forEach((path, i) => {
    const cell = cells[i] ?? ''
    if (cell.length === 0) return
    const parts = path.split('.')
    let at = out
    for (const p of parts.slice(0, -1)) {
      const next = at[p]
      if (typeof next === 'object' && next !== null && !Array.isArray(next)) at = next as Record<string, unknown>
      else { const o: Record<string, unknown> = {}; at[p] = o; at = o }
    }
    at[parts[parts.length - 1] as string] = csvCellValue(parts, cell)
  })
  return out
}

function csvCellValue(path: readonly string[], cell: string): unknown {
  const first = cell.trimStart()[0]
  if (first === '[' || first === '{') {
    try { return JSON.parse(cell) as unknown } catch (err) {
      throw new CtrError('BAD_INPUT', [`column ${path.join('.')}: not valid JSON (${(err as Error).message})`], { cause: err })
    }
  }
  if (path.includes('numeric')) {
    const n = Number(cell)
    if (cell.trim().length === 0 || !Number.isFinite(n)) throw new CtrError('BAD_INPUT', [`column ${path.join('.')}: ${JSON.stringify(cell)} is not a number`])
    return n
  }
  return cell
}
