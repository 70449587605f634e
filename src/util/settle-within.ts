// The one bounded wait, in two modes: `settleWithin` never rejects (the request path must not
// wait on a slow Redis past its budget, and a reply that arrives after we gave up must not become
// an unhandled rejection); `withTimeout` rejects on time-out, for callers that handle failures by
// throwing (the Redis queue). In both, a late result or rejection of the work is ignored.

export type Settled<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: Error; readonly timedOut: boolean }

/** Runs `start` and waits for its promise at most `ms`; a synchronous throw settles as a failure too. */
export function settleWithin<T>(start: () => Promise<T>, ms: number): Promise<Settled<T>> {
  return new Promise((resolve) => {
    let promise: Promise<T>
    try {
      promise = start()
    } catch (err) {
      resolve({ ok: false, error: toError(err), timedOut: false })
      return
    }
    const timer = setTimeout(() => {
      resolve({ ok: false, error: new Error(`no reply within ${Math.round(ms)} ms`), timedOut: true })
    }, Math.max(0, ms))
    promise.then(
      (value) => { clearTimeout(timer); resolve({ ok: true, value }) },
      (err: unknown) => { clearTimeout(timer); resolve({ ok: false, error: toError(err), timedOut: false }) },
    )
  })
}

/** Like `settleWithin`, but rejects: with the work's error, or with "<what> timed out after <ms> ms". */
export async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  const r = await settleWithin(() => work, ms)
  if (r.ok) return r.value
  throw r.timedOut ? new Error(`${what} timed out after ${ms} ms`) : r.error
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}
