// One catalog of the errors ctrserve reports: code, HTTP status, message template.
// 4xx are the caller's mistakes and always name the field and the reason; 5xx are ours.

export interface ErrorSpec {
  readonly code: string
  readonly status: number
  readonly message: string
}

export const ERRORS = {
  BAD_BODY: { code: 'CTR_ERR_BAD_BODY', status: 400, message: 'request body is invalid: %s' },
  BAD_FIELD: { code: 'CTR_ERR_BAD_FIELD', status: 400, message: '%s: %s' },
  TOO_MANY_ITEMS: { code: 'CTR_ERR_TOO_MANY_ITEMS', status: 400, message: 'items: %s' },
  BAD_URL: { code: 'CTR_ERR_BAD_URL', status: 400, message: '%s: %s' },
  OVERLOADED: { code: 'CTR_ERR_OVERLOADED', status: 503, message: 'server is overloaded, retry later' },
  NOT_READY: { code: 'CTR_ERR_NOT_READY', status: 503, message: 'not ready: %s' },
  BUDGET_SPENT: { code: 'CTR_ERR_BUDGET_SPENT', status: 503, message: 'budget_ms %s: spent before the request could be scored (%s ms left); retry later' },
  BAD_CONFIG: { code: 'CTR_ERR_BAD_CONFIG', status: 500, message: 'configuration %s: %s' },
  BAD_BUNDLE: { code: 'CTR_ERR_BAD_BUNDLE', status: 500, message: 'model bundle %s: %s' },
  INTERNAL: { code: 'CTR_ERR_INTERNAL', status: 500, message: 'internal error: %s' },
  // Reasons an embedding could not be computed (not HTTP errors: they end as OOV with a reason).
  FETCH_REFUSED: { code: 'CTR_ERR_FETCH_REFUSED', status: 0, message: 'image fetch refused: %s' },
  FETCH_FAILED: { code: 'CTR_ERR_FETCH_FAILED', status: 0, message: 'image fetch failed: %s' },
  IMAGE_INVALID: { code: 'CTR_ERR_IMAGE_INVALID', status: 0, message: 'image cannot be decoded: %s' },
} as const satisfies Record<string, ErrorSpec>

export type ErrorName = keyof typeof ERRORS

export class CtrError extends Error {
  readonly code: string
  readonly statusCode: number
  /** A permanent failure (404, undecodable image, refused address) is negatively cached, not retried. */
  readonly permanent: boolean

  constructor(name: ErrorName, args: readonly string[] = [], opts: { permanent?: boolean; cause?: unknown } = {}) {
    const spec: ErrorSpec = ERRORS[name]
    let i = 0
    super(spec.message.replace(/%s/g, () => String(args[i++] ?? '')), { cause: opts.cause })
    this.name = 'CtrError'
    this.code = spec.code
    this.statusCode = spec.status
    this.permanent = opts.permanent ?? false
  }
}

export function ctrError(name: ErrorName, ...args: string[]): CtrError {
  return new CtrError(name, args)
}
