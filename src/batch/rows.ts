import { Ajv, type ErrorObject } from 'ajv'
import type { Manifest } from '../bundle/manifest.ts'
import type { Config } from '../config.ts'
import { predictBodySchema } from '../predict/predict-schema.ts'
import type { FieldValues, PredictBody, PredictItem } from '../predict/types.ts'
import { serverOptions } from '../server-options.ts'

// Rows of the batch tools in the /predict shapes, validated by the same JSON schema and Ajv
// options as POST /predict (a row is checked as a one-item body), so a row the tools accept is
// a row the server accepts.

export interface ScoreRow {
  readonly context?: FieldValues
  readonly item: PredictItem
}

export type Checked<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string }

/**
 * Makes relative `image_url`s absolute against `baseUrl` (the sample's `images/<id>.jpg`), so
 * the cache key is the one the server computes for the absolute URL.
 */
export function resolveImageUrl(url: string | undefined, baseUrl: string | undefined): string | undefined {
  if (url === undefined || url.length === 0 || baseUrl === undefined) return url
  if (/^[a-z][a-z0-9+.-]*:/i.test(url)) return url
  return new URL(url, baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`).href
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** `{context, item}`, or a flat item that carries its context in a `context` field. */
function splitRow(value: unknown): { context: unknown; item: unknown } | undefined {
  if (!isObject(value)) return undefined
  if (isObject(value.item)) return { context: value.context, item: value.item }
  const { context, ...item } = value
  return { context, item }
}

function describe(e: ErrorObject | undefined): string {
  if (!e) return 'is invalid'
  if (e.keyword === 'additionalProperties') return `unknown property ${JSON.stringify(e.params.additionalProperty)}`
  if (e.keyword === 'pattern' && e.instancePath.endsWith('/image_url')) return 'must be an http(s) URL (a relative one needs --base-url)'
  return e.message ?? 'is invalid'
}

export class RowValidator {
  readonly #validate

  constructor(config: Config, manifest: Pick<Manifest, 'fields'>) {
    const ajvOptions = serverOptions(config).ajv?.customOptions ?? {}
    this.#validate = new Ajv({ ...ajvOptions }).compile(predictBodySchema({ maxItems: 1 }, manifest))
  }

  /** A row of `ctrserve score`: checked as the body `{context, items: [item]}`. */
  scoreRow(value: unknown, baseUrl?: string): Checked<ScoreRow> {
    const parts = splitRow(value)
    if (!parts) return { ok: false, error: 'row is not a JSON object' }
    const item = isObject(parts.item) && typeof parts.item.image_url === 'string'
      ? { ...parts.item, image_url: resolveImageUrl(parts.item.image_url, baseUrl) }
      : parts.item
    const body = parts.context === undefined ? { items: [item] } : { context: parts.context, items: [item] }
    if (!this.#validate(body)) return { ok: false, error: this.#message() }
    const checked = body as PredictBody
    return { ok: true, value: { ...(checked.context ? { context: checked.context } : {}), item: checked.items[0] as PredictItem } }
  }

  /** A row of `ctrserve warm`: an item in the /predict item shape. */
  item(value: unknown, baseUrl?: string): Checked<PredictItem> {
    if (!isObject(value)) return { ok: false, error: 'row is not a JSON object' }
    const item = typeof value.image_url === 'string' ? { ...value, image_url: resolveImageUrl(value.image_url, baseUrl) } : value
    if (!this.#validate({ items: [item] })) return { ok: false, error: this.#message() }
    return { ok: true, value: item as unknown as PredictItem }
  }

  #message(): string {
    const e = this.#validate.errors?.[0]
    const path = (e?.instancePath ?? '').replace(/^\/items\/0/, 'item').replace(/^\//, '') || 'row'
    return `${path}: ${describe(e)}`
  }
}
