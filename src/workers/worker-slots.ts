import type { Transferable, Worker } from 'node:worker_threads'

// A fixed number of worker threads of one kind (encoder workers, scorer threads): started, told
// apart by readiness, replaced when they die, closed gracefully. One copy of that life cycle, so
// every pool gets the same back-off: a worker that cannot start (a bad model path, a missing
// library) is restarted after 100, 200, 400 … ms up to 30 s, never in a tight loop.

/** Delay before restarting a worker after `failures` consecutive failed starts (0: it had started). */
export function respawnDelayMs(failures: number): number {
  return failures <= 0 ? 0 : Math.min(30_000, 100 * 2 ** (failures - 1))
}

/** What every worker sends back for a call: `id` of the call, and `error` when `ok` is false. */
export interface WorkerReply { readonly id: number; readonly ok: boolean; readonly error?: string }

/** The first message a worker sends once it can take calls; `warning` is logged. */
interface ReadyMessage { readonly ready: true; readonly warning?: string }

/** Asks a worker to release what it holds (ONNX sessions) and exit by itself. */
export interface CloseMessage { readonly kind: 'close' }

export interface WorkerSlotsOptions<Rep extends WorkerReply> {
  /** Names the workers in logs and errors, e.g. "text encoder worker", "scorer thread". */
  readonly name: string
  readonly size: number
  readonly create: () => Worker
  /** Sees every reply before its call settles (e.g. to take back transferred buffers). */
  readonly onReply?: (reply: Rep) => void
  readonly log?: { warn(o: object, m: string): void }
  /** Added to every log line (e.g. `{ kind: 'image' }`). */
  readonly logFields?: object
  /** How long close() lets a worker exit by itself before terminating it. */
  readonly closeGraceMs?: number
}

/** A request without its id (distributes over unions of request kinds). */
export type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never

type Ok<Rep> = Extract<Rep, { readonly ok: true }>

interface Pending<Rep> { resolve: (r: Ok<Rep>) => void; reject: (e: Error) => void }

interface Slot<Rep> {
  /** Undefined while a replacement waits for its back-off delay. */
  worker: Worker | undefined
  ready: Promise<void>
  /** Set once the worker said it is ready: a death before that is a failed start. */
  started: boolean
  pending: Map<number, Pending<Rep>>
}

const CLOSE_GRACE_MS = 5_000

/**
 * Calls go to the worker with the fewest in flight. A worker that dies fails the calls it held
 * (callers retry or answer 5xx) and is replaced: at once if it had started, after
 * respawnDelayMs(consecutive failed starts) if it died before it was ready.
 */
export class WorkerSlots<Req extends { readonly id: number }, Rep extends WorkerReply> {
  private readonly slots: Array<Slot<Rep>> = []
  private readonly delays = new Set<() => void>()
  private nextId = 1
  private failedStarts = 0
  private closed = false
  /** Workers replaced so far. */
  restarts = 0

  constructor(private readonly o: WorkerSlotsOptions<Rep>) {
    for (let i = 0; i < o.size; i++) this.slots.push(this.spawn(0))
  }

  get size(): number { return this.slots.length }

  /** Resolves when every worker is ready; rejects if one failed to start. */
  ready(): Promise<void> {
    return Promise.all(this.slots.map((s) => s.ready)).then(() => undefined)
  }

  /** The running workers (tests kill one to see it replaced). */
  workers(): Worker[] {
    return this.slots.flatMap((s) => (s.worker ? [s.worker] : []))
  }

  private spawn(delayMs: number): Slot<Rep> {
    const slot: Slot<Rep> = { worker: undefined, pending: new Map(), ready: Promise.resolve(), started: false }
    const wait = delayMs > 0 ? this.delay(delayMs) : Promise.resolve()
    slot.ready = wait.then(() => this.start(slot))
    slot.ready.catch(() => undefined)
    return slot
  }

  /** A back-off wait that close() cuts short (the start after it then sees the pool closed). */
  private delay(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => { clearTimeout(timer); this.delays.delete(done); resolve() }
      const timer = setTimeout(done, ms)
      this.delays.add(done)
    })
  }

  private start(slot: Slot<Rep>): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`${this.o.name} pool is closed`))
    const worker = this.o.create()
    slot.worker = worker
    const ready = new Promise<void>((resolve, reject) => {
      const onMsg = (m: Partial<ReadyMessage>): void => {
        if (m.ready !== true) return
        worker.off('message', onMsg)
        slot.started = true
        this.failedStarts = 0
        if (m.warning) this.o.log?.warn({ ...this.o.logFields }, m.warning)
        resolve()
      }
      worker.on('message', onMsg)
      worker.once('error', reject)
      worker.once('exit', (code) => reject(new Error(`${this.o.name} exited at start (code ${code})`)))
    })
    worker.on('message', (m: Rep | ReadyMessage) => { if ('id' in m) this.settle(slot, m) })
    let dead = false
    const onDeath = (err: unknown): void => {
      if (dead) return
      dead = true
      this.replace(slot, err)
    }
    worker.once('error', onDeath)
    worker.once('exit', (code) => onDeath(new Error(`exit code ${code}`)))
    return ready
  }

  private settle(slot: Slot<Rep>, m: Rep): void {
    const p = slot.pending.get(m.id)
    if (!p) return
    slot.pending.delete(m.id)
    this.o.onReply?.(m)
    if (m.ok) p.resolve(m as Ok<Rep>)
    else p.reject(new Error(`${this.o.name}: ${m.error ?? 'failed'}`))
  }

  private replace(slot: Slot<Rep>, err: unknown): void {
    for (const p of slot.pending.values()) p.reject(new Error(`${this.o.name} died: ${String(err)}`))
    slot.pending.clear()
    if (this.closed) return
    const i = this.slots.indexOf(slot)
    if (i < 0) return
    if (!slot.started) this.failedStarts++
    const delayMs = respawnDelayMs(slot.started ? 0 : this.failedStarts)
    this.restarts++
    this.o.log?.warn({ ...this.o.logFields, err: String(err), started: slot.started, delayMs }, `${this.o.name} died, replacing it`)
    this.slots[i] = this.spawn(delayMs)
  }

  /** Sends `{ id, ...body }` to the least busy worker (after it is ready); resolves with its ok reply. */
  call(body: WithoutId<Req>, transfer: readonly Transferable[] = []): Promise<Ok<Rep>> {
    if (this.closed) return Promise.reject(new Error(`${this.o.name} pool is closed`))
    let slot = this.slots[0] as Slot<Rep>
    for (const s of this.slots) if (s.pending.size < slot.pending.size) slot = s
    const id = this.nextId++
    const target = slot
    return new Promise<Ok<Rep>>((resolve, reject) => {
      target.pending.set(id, { resolve, reject })
      const req = { ...body, id }
      target.ready.then(
        () => target.worker?.postMessage(req, transfer),
        (err: unknown) => { target.pending.delete(id); reject(err instanceof Error ? err : new Error(String(err))) },
      )
    })
  }

  /**
   * Each worker is asked to release what it holds and exit (a session left to process exit can
   * abort the process in onnxruntime's exit-time clean-up); one that does not within the grace
   * time is terminated. Back-off waits are cut short and start nothing.
   */
  async close(): Promise<void> {
    this.closed = true
    for (const cut of [...this.delays]) cut()
    await Promise.all(this.slots.map(async ({ worker }) => {
      if (!worker || worker.threadId < 0) return // never started, or already gone
      const exited = new Promise<void>((r) => worker.once('exit', () => r()))
      const close: CloseMessage = { kind: 'close' }
      worker.postMessage(close)
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<'late'>((r) => { timer = setTimeout(() => r('late'), this.o.closeGraceMs ?? CLOSE_GRACE_MS) })
      if (await Promise.race([exited, late]) === 'late') await worker.terminate()
      clearTimeout(timer)
    }))
  }
}
