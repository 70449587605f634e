import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { csvRecords, csvRowObject } from '../src/batch/csv.ts'
import { countRows, readRows } from '../src/batch/row-reader.ts'
import { Progress } from '../src/cli/progress.ts'

// The pieces of the operator tools that are plain functions: CSV records, row reading, progress.

async function* chunks(...parts: string[]): AsyncGenerator<string> {
  yield* parts
}

async function records(...parts: string[]): Promise<string[][]> {
  const out: string[][] = []
  for await (const r of csvRecords(chunks(...parts))) out.push(r)
  return out
}

test('CSV: quotes, escaped quotes, commas and newlines inside quotes, CRLF split across chunks, no final newline', async () => {
  assert.deepEqual(await records('a,b,c\r', '\n1,"x, y","say ""hi"""\r\n2,"two\nlines",\n', '3,,last'), [
    ['a', 'b', 'c'], ['1', 'x, y', 'say "hi"'], ['2', 'two\nlines', ''], ['3', '', 'last'],
  ])
  assert.deepEqual(await records('\n\na\n\n'), [['a']])
  await assert.rejects(records('a,"open'), /ends inside a quoted field/)
})

test('CSV: dotted headers become the /predict shapes; numbers under numeric, JSON cells, empty = missing', () => {
  const header = ['id', 'title', 'categorical.tags', 'categorical.publisher', 'numeric.age_hours', 'context.numeric.hour', 'image_url']
  assert.deepEqual(csvRowObject(header, ['a1', '12', '["cars","suv"]', 'p42', '3.5', '14', '']), {
    id: 'a1', title: '12', categorical: { tags: ['cars', 'suv'], publisher: 'p42' }, numeric: { age_hours: 3.5 }, context: { numeric: { hour: 14 } },
  })
  assert.throws(() => csvRowObject(header, ['a1']), /has 1 fields, the header has 7/)
  assert.throws(() => csvRowObject(['numeric.age_hours'], ['old']), /numeric.age_hours: "old" is not a number/)
  assert.throws(() => csvRowObject(['categorical.tags'], ['[oops']), /not valid JSON/)
})

test('rows keep their index when a line is not JSON, blank lines are not rows, countRows agrees', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ctrserve-cli-input-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'rows.jsonl')
  writeFileSync(path, '{"id":"a"}\n\n{oops\r\n{"id":"c"}')
  const rows = []
  for await (const r of readRows(path)) rows.push(r)
  assert.deepEqual(rows.map((r) => [r.index, r.line, r.value ?? null]), [[0, 1, { id: 'a' }], [1, 3, null], [2, 4, { id: 'c' }]])
  assert.match(rows[1]?.error ?? '', /^line 3: not JSON/)
  assert.equal(await countRows(path), 3)
  const csv = join(dir, 'rows.csv')
  writeFileSync(csv, 'id,numeric.x\na,1\nb,two\n')
  const csvRows = []
  for await (const r of readRows(csv)) csvRows.push(r)
  assert.deepEqual(csvRows[0]?.value, { id: 'a', numeric: { x: 1 } })
  assert.match(csvRows[1]?.error ?? '', /record 3: column numeric.x/)
  assert.equal(await countRows(csv), 2)
})

test('progress: a bar with rate and ETA redrawn in place on a terminal, plain lines otherwise', async () => {
  const tty: string[] = []
  const p = new Progress({ label: 'warm', total: 200, unit: 'rows', stream: { isTTY: true, columns: 200, write: (s) => tty.push(s) } })
  await new Promise((r) => setTimeout(r, 120))
  p.add(50)
  p.stop()
  const drawn = tty.join('')
  assert.match(drawn, /\r\[######------------------\] warm: 50\/200 rows 25\.0% [\d.]+ rows\/s ETA \S+/)
  assert.ok(drawn.includes('\u001b[K'), 'clears the rest of the line')
  assert.ok(drawn.endsWith('\n'))

  const plain: string[] = []
  const q = new Progress({ label: 'score', total: 0, unit: 'rows', intervalMs: 30, stream: { isTTY: false, write: (s) => plain.push(s) } })
  q.add(7)
  await new Promise((r) => setTimeout(r, 100))
  q.stop()
  assert.ok(plain.length >= 2, `${plain.length} lines`)
  for (const l of plain) assert.match(l, /^score: 7 rows [\d.]+ rows\/s\n$/)
})
