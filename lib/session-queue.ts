// SessionQueue: a FIFO of payloads copied into a client's queue allocator,
// bounded by payload bytes and message count, with a policy for overflow.
import { EventEmitter } from 'node:events';

import { toBuffer } from './allocator';
import { invalidArgument } from './errors';
import { native, threadAllocator } from './native';
import type { SessionAllocatorSet } from './session-allocator-manager';
import { assertBytes } from './validate';

export type OverflowPolicy = 'reject' | 'drop-oldest';

export interface SessionQueueOptions {
  /** Maximum payload bytes held (0 or absent = no bound of its own). */
  maxBytes?: number;
  /** Maximum payloads held (0 or absent = no bound of its own). */
  maxMessages?: number;
  overflow: OverflowPolicy;
}

interface StoredPayload {
  buffer: Buffer;
  /** Usable bytes charged for the buffer. */
  charge: number;
}

export interface SessionQueueEvents {
  /** A payload dropped to make room under 'drop-oldest'; a copy the listener owns. */
  drop: [payload: Buffer];
}

/**
 * A FIFO of payloads stored in the client's queue allocator. Payloads are
 * copied in on push and copied out on shift. The queue's own buffers never
 * leave it, so no caller can keep a view of memory the queue has freed.
 */
export class SessionQueue extends EventEmitter<SessionQueueEvents> {
  private items: StoredPayload[] = [];
  private head = 0;
  private payloadBytes = 0;
  // Bytes the allocators are charged for this queue's payloads (usable sizes).
  private chargedBytes = 0;
  private readonly maxBytes: number;
  private readonly maxMessages: number;
  readonly overflow: OverflowPolicy;

  /** @internal */
  constructor(
    readonly clientId: string,
    private readonly resolveAllocators: () => SessionAllocatorSet,
    options: SessionQueueOptions,
  ) {
    super();
    if (options === null || typeof options !== 'object') {
      throw invalidArgument('options', options, "an object with overflow 'reject' or 'drop-oldest'");
    }
    if (options.overflow !== 'reject' && options.overflow !== 'drop-oldest') {
      throw invalidArgument('overflow', options.overflow, "'reject' or 'drop-oldest'");
    }
    if (options.maxBytes !== undefined) assertBytes('maxBytes', options.maxBytes);
    if (options.maxMessages !== undefined) assertBytes('maxMessages', options.maxMessages);
    this.maxBytes = options.maxBytes ?? 0;
    this.maxMessages = options.maxMessages ?? 0;
    this.overflow = options.overflow;
  }

  /** Payloads held. */
  get length(): number {
    return this.items.length - this.head;
  }

  /** Payload bytes held: the unit of maxBytes. The allocators are charged the
   * backend's usable sizes, which are a little larger. */
  get bytes(): number {
    return this.payloadBytes;
  }

  /**
   * Copies `payload` into the queue. Returns false when it was refused by
   * the queue's bounds or by a limit of the client, thread or process. Under
   * 'drop-oldest' the oldest payloads are dropped first, as many as needed,
   * each reported by a 'drop' event.
   */
  push(payload: Buffer | Uint8Array | string): boolean {
    const source = typeof payload === 'string' ? Buffer.from(payload) : payload;
    if (!(source instanceof Uint8Array)) {
      throw invalidArgument('payload', payload, 'a Buffer, Uint8Array or string');
    }
    const size = source.byteLength;
    if (this.maxBytes !== 0 && size > this.maxBytes) return false;

    if (this.overflow === 'reject') {
      if (!this.fitsBounds(size)) return false;
      return this.store(source);
    }

    // Drop nothing for a payload that would not fit even in an empty queue.
    if (!this.fitsOnceEmpty(size)) return false;
    while (!this.fitsBounds(size)) this.dropOldest();
    while (!this.store(source)) {
      if (this.length === 0) return false;
      this.dropOldest();
    }
    return true;
  }

  /** Removes the oldest payload and returns a copy the caller owns; its queue
   * memory is freed and uncharged at once. */
  shift(): Buffer | undefined {
    if (this.length === 0) return undefined;
    const stored = this.take();
    const copy = Buffer.allocUnsafe(stored.length);
    stored.copy(copy);
    native.release(stored);
    return copy;
  }

  /** Returns a copy of the oldest payload without removing it. */
  peek(): Buffer | undefined {
    return this.length === 0 ? undefined : Buffer.from(this.items[this.head].buffer);
  }

  /** Frees every payload. */
  clear(): void {
    while (this.length > 0) native.release(this.take());
  }

  private fitsBounds(size: number): boolean {
    if (this.maxMessages !== 0 && this.length + 1 > this.maxMessages) return false;
    return this.maxBytes === 0 || this.payloadBytes + size <= this.maxBytes;
  }

  /**
   * Returns false when `size` bytes would pass a limit on the allocator path
   * even after every payload of this queue was freed. The check uses the
   * requested size, but the allocation charges the usable size, which can be
   * a little larger. So a push that passes it may still be rejected after
   * dropping.
   */
  private fitsOnceEmpty(size: number): boolean {
    const { queue, session } = this.resolveAllocators();
    const path = [queue, session, threadAllocator];
    for (const node of path) {
      if (node.limit !== 0 && node.usage - this.chargedBytes + size > node.limit) return false;
    }
    const globalLimit = native.globalLimit();
    return globalLimit === 0 || native.globalUsage() - this.chargedBytes + size <= globalLimit;
  }

  private store(source: Uint8Array): boolean {
    const queue = this.resolveAllocators().queue;
    const before = queue.usage;
    const result = queue.allocate(source.byteLength, false);
    if (result === undefined) return false;

    // Only this thread allocates from this client's queue allocator, so the
    // change of its usage is this block's charge.
    const charge = queue.usage - before;
    const buffer = toBuffer(result);
    buffer.set(source);
    this.items.push({ buffer, charge });
    this.payloadBytes += buffer.length;
    this.chargedBytes += charge;
    return true;
  }

  private take(): Buffer {
    const { buffer: stored, charge } = this.items[this.head];
    this.head += 1;
    this.payloadBytes -= stored.length;
    this.chargedBytes -= charge;
    // Compact now and then, so shifted slots do not pile up.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return stored;
  }

  private dropOldest(): void {
    const stored = this.take();
    const copy = this.listenerCount('drop') > 0 ? Buffer.from(stored) : undefined;
    native.release(stored);
    if (copy !== undefined) this.emit('drop', copy);
  }
}
