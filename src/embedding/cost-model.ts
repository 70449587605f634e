// How long computing one miss takes (fetch + decode + encode for an image, encode for a title),
// learnt from every computation, per image origin host. The `budget` policy computes inline only
// when this estimate fits the time left, so it must be right at the tail, not on average: the
// estimate is a high quantile of the recent window, with a margin, and a host seen too rarely
// borrows the tail of every host.
import type { Modality } from '../modalities/modality.ts'
import { RecentWindow as Window } from '../util/recent-window.ts'

export interface CostModelOptions {
  /** Durations remembered per host (and per modality overall). */
  readonly window: number
  /** Samples a host needs before its own window is used. */
  readonly minSamples: number
  /** Quantile of the window taken as the cost (0.99: with 64 samples, the largest but one). */
  readonly quantile: number
  /** Factor on that quantile: the window has not seen the whole tail. */
  readonly margin: number
  /** Hosts remembered; the least recently used is forgotten (callers choose host names). */
  readonly maxHosts: number
  /** Estimate before anything was observed. */
  readonly initialMs: Readonly<Record<Modality, number>>
}

export const DEFAULT_COST_MODEL: CostModelOptions = {
  window: 64, minSamples: 8, quantile: 0.99, margin: 1.25, maxHosts: 1024, initialMs: { image: 250, text: 40 },
}

export class CostModel {
  private readonly overall: Record<Modality, Window>
  /** Insertion order is recency order (re-inserted on use): the first key is the least recent. */
  private readonly hosts = new Map<string, Window>()

  constructor(private readonly opts: CostModelOptions = DEFAULT_COST_MODEL) {
    this.overall = { image: new Window(opts.window), text: new Window(opts.window) }
  }

  /** One computation of `modality` (for images: from `host`) took `ms`. */
  observe(modality: Modality, host: string | undefined, ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return
    this.overall[modality].add(ms)
    if (modality !== 'image' || host === undefined) return
    const w = this.hosts.get(host) ?? new Window(this.opts.window)
    this.hosts.delete(host)
    this.hosts.set(host, w)
    w.add(ms)
    if (this.hosts.size > this.opts.maxHosts) this.hosts.delete(this.hosts.keys().next().value as string)
  }

  /** Conservative cost of one more computation, in ms. */
  estimateMs(modality: Modality, host?: string): number {
    const own = modality === 'image' && host !== undefined ? this.hosts.get(host) : undefined
    const w = own && own.count >= this.opts.minSamples ? own : this.overall[modality]
    if (w.count < this.opts.minSamples) return this.opts.initialMs[modality]
    return w.quantile(this.opts.quantile) * this.opts.margin
  }
}

/** The origin host of an image URL ('' when it does not parse: such a URL fails fast anyway). */
export function hostOf(url: string): string {
  try { return new URL(url).host } catch { return '' }
}
