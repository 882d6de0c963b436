// ArrivalQueue: a list of messages in the order they joined it.
//
// Messages mostly leave from the front, as Aedes sends and clients
// acknowledge them in order, but any message may leave. One that leaves from
// the middle is only unmarked, and later skipped. Slots before the oldest
// live message are cleared, so that the array keeps no message that left
// from the front alive for the garbage collector to copy. Once unmarked
// messages are as many as the live ones, the array is compacted. Adding and
// removing thus cost no hash-table work, and nothing is rehashed as a list
// grows and empties with every message.

/** An item that records the queue it is in. */
export interface Queueable {
  /** The queue holding the item, or undefined when it is in none. */
  owner: object | undefined;
}

/** Removed items kept in the array before compaction is considered. */
const COMPACT_FROM = 1024;

export class ArrivalQueue<T extends Queueable> {
  // Slots before `head` are undefined; from `head` on, every slot contains an
  // item, live or unmarked.
  private items: Array<T | undefined> = [];
  // Index of the oldest item still queued, when there is one.
  private head = 0;
  private count = 0;

  /** Items in the queue. */
  get size(): number {
    return this.count;
  }

  /** Returns true while `item` is in this queue. */
  has(item: T): boolean {
    return item.owner === this;
  }

  /** Appends `item`, which must not be in a queue. An item that left this
   * queue must not join it again, because its old slot may still be in the
   * array. */
  push(item: T): void {
    item.owner = this;
    this.items.push(item);
    this.count += 1;
  }

  /** Returns the oldest item, or undefined when the queue is empty. */
  first(): T | undefined {
    return this.count === 0 ? undefined : this.items[this.head];
  }

  /** Returns the oldest item for which `match(item, a, b)` is true. The
   * keys are passed separately, so that a caller needs no closure per search. */
  find<A, B>(match: (item: T, a: A, b: B) => boolean, a: A, b: B): T | undefined {
    for (let i = this.head; i < this.items.length; i += 1) {
      const item = this.items[i] as T;
      if (item.owner === this && match(item, a, b)) return item;
    }
    return undefined;
  }

  /** Removes `item`, which must be in this queue. */
  remove(item: T): void {
    item.owner = undefined;
    this.count -= 1;
    if (this.count === 0) {
      // Popped one by one rather than truncated: a queue that empties with
      // every message has one or two slots, and pop() is inlined where a
      // length change is a runtime call. Each slot is popped once at most.
      while (this.items.length > 0) this.items.pop();
      this.head = 0;
      return;
    }

    while ((this.items[this.head] as T).owner !== this) {
      this.items[this.head] = undefined;
      this.head += 1;
    }
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
      const item = this.items[i] as T;
      if (item.owner === this) live.push(item);
    }
    return live;
  }

  /** Removes every item. */
  clear(): void {
    for (const item of this.values()) item.owner = undefined;
    this.items = [];
    this.head = 0;
    this.count = 0;
  }
}
