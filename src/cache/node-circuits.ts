import calculateSlot from 'cluster-key-slot'

// Per-master circuit breakers for L2 reads on a Redis Cluster. When a master dies, ioredis keeps
// retrying its commands until the slot map names the promoted replica (node timeout + election:
// seconds), so every request touching its slots would wait out its whole L2 stage. After one read
// of a node's keys goes unanswered, the node's circuit is open for `openMs`: its keys are misses
// at once (L1 + OOV, the request keeps its budget); then one request tries it again. Once the slot
// map moves the slots to the promoted replica, their keys map to a node whose circuit is closed.

export class NodeCircuits {
  readonly #openedAt = new Map<string, number>()

  constructor(
    /** The client's slot map: slot → node keys (`host:port`), master first (ioredis `Cluster.slots`). */
    private readonly slots: () => ReadonlyArray<readonly string[] | undefined>,
    private readonly openMs = 1_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The nodes serving `key`'s slot as the client knows them (master first), or undefined before the slot map is read. */
  slotNodes(key: string): readonly string[] | undefined {
    return this.slots()[calculateSlot(key)]
  }

  /** Whether reads to `node` are skipped now (opened within the last openMs). */
  isOpen(node: string | undefined): boolean {
    if (node === undefined) return false
    const at = this.#openedAt.get(node)
    if (at === undefined) return false
    if (this.now() - at < this.openMs) return true
    this.#openedAt.delete(node) // half-open: the next read tries it
    return false
  }

  open(node: string): void {
    this.#openedAt.set(node, this.now())
  }

  close(node: string): void {
    this.#openedAt.delete(node)
  }
}
