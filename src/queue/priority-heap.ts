// A binary max-heap whose items know their own position, so raising one item's priority is
// O(log n) (the common npm heaps find an item by scanning, O(n) at 100k queued jobs).

export interface HeapItem {
  /** Larger runs first. */
  priority: number
  /** Position in the heap; -1 when not in one. Owned by the heap. */
  heapIndex: number
  /** Tie-break: among equal priorities the smaller runs first (arrival order). */
  readonly seq: number
}

function before(a: HeapItem, b: HeapItem): boolean {
  return a.priority > b.priority || (a.priority === b.priority && a.seq < b.seq)
}

export class PriorityHeap<T extends HeapItem> {
  private readonly items: T[] = []

  get size(): number {
    return this.items.length
  }

  /** Every item, in heap order (for saving them; not sorted). */
  values(): readonly T[] {
    return this.items
  }

  peek(): T | undefined {
    return this.items[0]
  }

  push(item: T): void {
    item.heapIndex = this.items.length
    this.items.push(item)
    this.up(item.heapIndex)
  }

  pop(): T | undefined {
    const top = this.items[0]
    if (top !== undefined) this.removeAt(0)
    return top
  }

  /** Call after raising `item.priority` (priorities only grow while queued). */
  raised(item: T): void {
    if (this.items[item.heapIndex] === item) this.up(item.heapIndex)
  }

  /** Call after changing `item.priority` either way. */
  changed(item: T): void {
    const i = item.heapIndex
    if (this.items[i] !== item) return
    this.down(i)
    this.up(item.heapIndex)
  }

  /** Removes `item` if it is in this heap. */
  remove(item: T): void {
    if (this.items[item.heapIndex] === item) this.removeAt(item.heapIndex)
  }

  /** Removes every item for which `drop` holds, in O(n); returns them. */
  removeWhere(drop: (item: T) => boolean): T[] {
    const removed: T[] = []
    let w = 0
    for (const item of this.items) {
      if (drop(item)) { item.heapIndex = -1; removed.push(item); continue }
      item.heapIndex = w
      this.items[w++] = item
    }
    this.items.length = w
    for (let i = (w >> 1) - 1; i >= 0; i--) this.down(i)
    return removed
  }

  /** Empties the heap and returns what it held. */
  clear(): T[] {
    const all = this.items.splice(0)
    for (const item of all) item.heapIndex = -1
    return all
  }

  private removeAt(i: number): void {
    const item = this.items[i] as T
    const last = this.items.pop() as T
    item.heapIndex = -1
    if (last === item) return
    this.items[i] = last
    last.heapIndex = i
    this.down(i)
    this.up(last.heapIndex)
  }

  private up(i: number): void {
    const item = this.items[i] as T
    while (i > 0) {
      const p = (i - 1) >> 1
      const parent = this.items[p] as T
      if (!before(item, parent)) break
      this.place(parent, i)
      i = p
    }
    this.place(item, i)
  }

  private down(i: number): void {
    const n = this.items.length
    const item = this.items[i] as T
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      const c = r < n && before(this.items[r] as T, this.items[l] as T) ? r : l
      const child = this.items[c] as T
      if (!before(child, item)) break
      this.place(child, i)
      i = c
    }
    this.place(item, i)
  }

  private place(item: T, i: number): void {
    this.items[i] = item
    item.heapIndex = i
  }
}
