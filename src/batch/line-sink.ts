import { createWriteStream } from 'node:fs'
import { once } from 'node:events'
import type { Writable } from 'node:stream'

/** Text out to a file or stdout, waiting for 'drain' when the stream's buffer is full (backpressure). */
export class LineSink {
  readonly #out: Writable
  readonly #owned: boolean

  private constructor(out: Writable, owned: boolean) {
    this.#out = out
    this.#owned = owned
  }

  /** `-` is stdout (not closed at the end). */
  static open(path: string): LineSink {
    if (path === '-') return new LineSink(process.stdout, false)
    return new LineSink(createWriteStream(path, { encoding: 'utf8', highWaterMark: 1 << 20 }), true)
  }

  async write(text: string): Promise<void> {
    if (text.length === 0) return
    if (!this.#out.write(text)) await once(this.#out, 'drain')
  }

  async close(): Promise<void> {
    if (!this.#owned) return
    this.#out.end()
    await once(this.#out, 'finish')
  }
}
