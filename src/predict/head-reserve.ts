// How much of the budget to keep for the work after the inline stages (head run, statistics,
// enqueue, serialisation), learnt per item from recent requests and taken at the tail: a reserve
// that is right on average would make every other request late.
import { RecentWindow } from '../util/recent-window.ts'

const FIXED_MS = 3
const INITIAL_MS_PER_ITEM = 0.15
const QUANTILE = 0.99
const MARGIN = 1.5

export class HeadReserve {
  private readonly perItem = new RecentWindow(256)

  observe(items: number, ms: number): void {
    // The fixed part is taken out first, or small requests would inflate the per-item cost.
    if (items > 0 && Number.isFinite(ms) && ms >= 0) this.perItem.add(Math.max(0, ms - FIXED_MS) / items)
  }

  /** Milliseconds to keep for the end of a request of `items` items. */
  reserveMs(items: number): number {
    const per = this.perItem.count >= 16 ? this.perItem.quantile(QUANTILE) * MARGIN : INITIAL_MS_PER_ITEM
    return FIXED_MS + items * per
  }
}
