// Parsing of the raw stream replies (ioredis `call` returns `unknown`) into typed entries.

export interface StreamEntry {
  readonly id: string
  readonly key: string
  readonly input: string
  /** 1-based attempt number recorded when the entry was added (retries add a new entry). */
  readonly attempt: number
  /** Times this entry was delivered to a consumer; > 1 means an earlier consumer never settled it. */
  readonly deliveries: number
}

/** An entry written by something other than this queue; acknowledged and discarded. */
export interface MalformedEntry {
  readonly id: string
}

export interface ParsedEntries {
  readonly entries: StreamEntry[]
  readonly malformed: MalformedEntry[]
}

function fieldMap(raw: unknown): Map<string, string> {
  const map = new Map<string, string>()
  if (!Array.isArray(raw)) return map
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const [field, value]: unknown[] = [raw[i], raw[i + 1]]
    if (typeof field === 'string' && typeof value === 'string') map.set(field, value)
  }
  return map
}

function collect(out: ParsedEntries, id: unknown, deliveries: unknown, rawFields: unknown): void {
  if (typeof id !== 'string') return
  const fields = fieldMap(rawFields)
  const key = fields.get('key')
  const input = fields.get('input')
  const attempt = Number(fields.get('attempt'))
  if (key === undefined || input === undefined || !Number.isInteger(attempt) || attempt < 1) {
    out.malformed.push({ id })
    return
  }
  out.entries.push({ id, key, input, attempt, deliveries: typeof deliveries === 'number' ? deliveries : 1 })
}

/** XREADGROUP reply for one stream: null or [[stream, [[id, [field, value, ...]], ...]]]. */
export function parseReadReply(reply: unknown): ParsedEntries {
  const out: ParsedEntries = { entries: [], malformed: [] }
  if (!Array.isArray(reply)) return out
  for (const stream of reply as unknown[]) {
    if (!Array.isArray(stream) || !Array.isArray(stream[1])) continue
    for (const entry of stream[1] as unknown[]) {
      if (Array.isArray(entry)) collect(out, entry[0], 1, entry[1])
    }
  }
  return out
}

/** RECLAIM script reply: [cursor, [[id, deliveries, [field, value, ...]], ...]]. */
export function parseReclaimReply(reply: unknown): ParsedEntries & { readonly cursor: string } {
  const out: ParsedEntries = { entries: [], malformed: [] }
  if (!Array.isArray(reply)) return { ...out, cursor: '0-0' }
  const [cursor, claimed]: unknown[] = reply
  if (Array.isArray(claimed)) {
    for (const entry of claimed as unknown[]) {
      if (Array.isArray(entry)) collect(out, entry[0], entry[1], entry[2])
    }
  }
  return { ...out, cursor: typeof cursor === 'string' ? cursor : '0-0' }
}
