// ArrivalQueue: the queued messages of one client, in arrival order.
//
// Messages mostly leave from the front, as Aedes sends them in order, but
// any message may leave. One that leaves from the middle is only marked, and
// later skipped. Once marked messages are as many as the live ones, the
// array is compacted. Adding and removing thus cost no hash-table work, and
// nothing is rehashed as a queue grows and empties with every message.

/** An item that records whether it is in a queue. */
export interface Queueable {
  queued: boolean;
}

/** Removed items kept in the array before compaction is considered. */
const COMPACT_FROM = 1024;

export class ArrivalQueue<T extends Queueable> {
  private items: T[] = [];
  // Index of the oldest item still queued, when there is one.
  private head = 0;
  private count = 0;

  /** Items in the queue. */
  get size(): number {
    return this.count;
  }

  /** Appends `item`, which must not be in a queue. */
  push(item: T): void {
    item.queued = true;
    this.items.push(item);
    this.count += 1;
  }

  /** Returns the oldest item, or undefined when the queue is empty. */
  first(): T | undefined {
    return this.count === 0 ? undefined : this.items[this.head];
  }

  /** Removes `item`, which must be in this queue. */
  remove(item: T): void {
    item.queued = false;
    this.count -= 1;
    if (this.count === 0) {
      this.items.length = 0;
      this.head = 0;
      return;
    }

    while (!this.items[this.head].queued) this.head += 1;
    const removed = this.items.length - this.count;
    if (removed >= COMPACT_FROM && removed >= this.count) {
      this.items = this.values();
      this.head = 0;
    }
  }

  /** Returns the queued items in arrival order, as a new array. */
  values(): T[] {
    const live: T[] = [];
    for (let i = this.head; i < this.items.length; i += 1) {
      if (this.items[i].queued) live.push(this.items[i]);
    }
    return live;
  }

  /** Removes every item. */
  clear(): void {
    for (const item of this.values()) item.queued = false;
    this.items = [];
    this.head = 0;
    this.count = 0;
  }
}
