// Progress of a long command on stderr: a bar with rate and ETA redrawn in place on a terminal,
// a plain line every `intervalMs` otherwise (CI logs, `2> file`), so logs never fill with bars.

export interface ProgressStream {
  readonly isTTY?: boolean
  readonly columns?: number
  write(s: string): unknown
}

export interface ProgressOptions {
  readonly label: string
  /** Expected total units; 0 when unknown (no bar, no ETA). */
  readonly total: number
  readonly unit: string
  readonly stream?: ProgressStream
  /** Plain-line period when not a terminal. */
  readonly intervalMs?: number
  /** Extra text after the counts (e.g. failures so far). */
  readonly detail?: () => string
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?'
  const s = Math.round(seconds)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = s % 60
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`
}

export class Progress {
  readonly #o: ProgressOptions
  readonly #stream: ProgressStream
  readonly #tty: boolean
  readonly #started = performance.now()
  #done = 0
  #lastDraw = 0
  #timer: NodeJS.Timeout | undefined

  constructor(opts: ProgressOptions) {
    this.#o = opts
    this.#stream = opts.stream ?? process.stderr
    this.#tty = this.#stream.isTTY === true
    const every = this.#tty ? 200 : (opts.intervalMs ?? 10_000)
    this.#timer = setInterval(() => this.#draw(), every).unref()
  }

  add(n: number): void {
    this.#done += n
    if (this.#tty && performance.now() - this.#lastDraw > 100) this.#draw()
  }

  get done(): number {
    return this.#done
  }

  /** Units per second since the start. */
  rate(): number {
    const s = (performance.now() - this.#started) / 1000
    return s > 0 ? this.#done / s : 0
  }

  line(): string {
    const { total, unit, label } = this.#o
    const rate = this.rate()
    const counts = total > 0 ? `${this.#done}/${total} ${unit}` : `${this.#done} ${unit}`
    const pct = total > 0 ? ` ${(100 * Math.min(1, this.#done / total)).toFixed(1)}%` : ''
    const eta = total > 0 && rate > 0 ? ` ETA ${formatDuration((total - this.#done) / rate)}` : ''
    const detail = this.#o.detail ? ` ${this.#o.detail()}` : ''
    return `${label}: ${counts}${pct} ${rate.toFixed(1)} ${unit}/s${eta}${detail}`
  }

  #draw(): void {
    this.#lastDraw = performance.now()
    const text = this.line()
    if (!this.#tty) { this.#stream.write(`${text}\n`); return }
    const width = 24
    const total = this.#o.total
    const filled = total > 0 ? Math.round(width * Math.min(1, this.#done / total)) : 0
    const bar = total > 0 ? `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ` : ''
    const cols = this.#stream.columns ?? 120
    this.#stream.write(`\r${`${bar}${text}`.slice(0, cols - 1)}\x1b[K`)
  }

  /** Stops redrawing; on a terminal, leaves the final bar on its own line. */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = undefined
    if (this.#tty) { this.#draw(); this.#stream.write('\n') }
  }
}
