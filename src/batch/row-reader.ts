import { createReadStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { csvRecords, csvRowObject } from './csv.ts'

// Rows of a JSONL or CSV file, one at a time (constant memory whatever the file size).
// A row that cannot be parsed still comes out, with its error, so that row numbers and
// `--shard i/n` stay aligned with the file.

export type RowFormat = 'jsonl' | 'csv'

export type Row =
  | { readonly index: number; readonly line: number; readonly value: unknown; readonly error?: undefined }
  | { readonly index: number; readonly line: number; readonly value?: undefined; readonly error: string }

/** `.csv` (any case) is CSV; everything else is JSONL. */
export function formatOf(path: string): RowFormat {
  return path.toLowerCase().endsWith('.csv') ? 'csv' : 'jsonl'
}

/**
 * Data rows of `path` in order. `index` counts data rows from 0 (blank JSONL lines and the CSV
 * header are not rows); `line` is the 1-based line (JSONL) or record (CSV) number for messages.
 */
export async function* readRows(path: string, format: RowFormat = formatOf(path)): AsyncGenerator<Row> {
  const input = createReadStream(path, { encoding: 'utf8', highWaterMark: 1 << 16 })
  if (format === 'csv') {
    let header: string[] | undefined
    let index = 0
    let line = 0
    for await (const cells of csvRecords(input)) {
      line++
      if (!header) { header = cells.map((h) => h.trim()); continue }
      try {
        yield { index, line, value: csvRowObject(header, cells) }
      } catch (err) {
        yield { index, line, error: `record ${line}: ${(err as Error).message}` }
      }
      index++
    }
    return
  }
  const lines = createInterface({ input, crlfDelay: Infinity })
  let index = 0
  let line = 0
  for await (const text of lines) {
    line++
    if (text.trim().length === 0) continue
    let row: Row
    try {
      row = { index, line, value: JSON.parse(text) as unknown }
    } catch (err) {
      row = { index, line, error: `line ${line}: not JSON (${(err as Error).message})` }
    }
    index++
    yield row
  }
}

/** Number of data rows (for progress and ETA): a fast pass that does not parse JSON. */
export async function countRows(path: string, format: RowFormat = formatOf(path)): Promise<number> {
  if (format === 'csv') {
    let n = -1
    const records = csvRecords(createReadStream(path, { encoding: 'utf8', highWaterMark: 1 << 16 }))
    while ((await records.next()).done !== true) n++
    return Math.max(0, n)
  }
  let n = 0
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8', highWaterMark: 1 << 16 }), crlfDelay: Infinity })
  for await (const text of lines) if (text.trim().length > 0) n++
  return n
}
