// SessionQueue: a FIFO of payloads copied into a client's queue allocator,
// bounded by payload bytes and message count, with a policy for overflow.
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';

import { invalidArgument, MqttAllocatorError } from './errors';
import { native, NativeAllocatorToken, NativeQueueHandle } from './native';
import { outputBuffer } from './output-pool';
import type { SessionAllocatorSet } from './session-allocator-manager';
import { assertBytes, assertCount, assertKnownOptions, assertLivePayload } from './validate';

export type OverflowPolicy = 'reject' | 'drop-oldest';

export interface SessionQueueOptions {
  /** Maximum payload bytes held (0 or absent = no bound of its own). */
  maxBytes?: number;
  /** Maximum payloads held (0 or absent = no bound of its own). */
  maxMessages?: number;
  overflow: OverflowPolicy;
}

const QUEUE_OPTIONS: readonly (keyof SessionQueueOptions)[] = ['maxBytes', 'maxMessages', 'overflow'];

export interface SessionQueueEvents {
  /** A payload dropped to make room under 'drop-oldest'; a copy the listener owns. */
  drop: [payload: Buffer];
}

/**
 * A FIFO of payloads stored in the client's queue allocator. Payloads are
 * copied in on push and copied out on shift. While queued they are native
 * blocks, not Buffers, so no caller can keep a view of memory the queue has
 * freed, and a message costs no external Buffer. A queue that is never
 * cleared frees its payloads when it is garbage-collected.
 */
export class SessionQueue extends EventEmitter<SessionQueueEvents> {
  private readonly handle: NativeQueueHandle = native.queueCreate();
  // The queue allocator's token, kept between pushes. A removed allocator
  // refuses with MQ_ERR_ALLOCATOR_NOT_FOUND, and store() then resolves the
  // session's current one.
  private token: NativeAllocatorToken | undefined;
  // Payload sizes in queue order, from `head` on, so that shift() can make
  // its Buffer before the one native call.
  private sizes: number[] = [];
  private head = 0;
  private payloadBytes = 0;
  private readonly maxBytes: number;
  private readonly maxMessages: number;
  readonly overflow: OverflowPolicy;

  /** @internal */
  constructor(
    readonly clientId: string,
    /** Returns the client's allocators; `fresh` skips the cache. */
    private readonly resolveAllocators: (fresh?: boolean) => SessionAllocatorSet,
    options: SessionQueueOptions,
  ) {
    super();
    if (options === null || typeof options !== 'object') {
      throw invalidArgument('options', options, "an object with overflow 'reject' or 'drop-oldest'");
    }
    assertKnownOptions('options', options, QUEUE_OPTIONS);
    if (options.overflow !== 'reject' && options.overflow !== 'drop-oldest') {
      throw invalidArgument('overflow', options.overflow, "'reject' or 'drop-oldest'");
    }
    if (options.maxBytes !== undefined) assertBytes('maxBytes', options.maxBytes);
    if (options.maxMessages !== undefined) assertCount('maxMessages', options.maxMessages, 'messages');
    this.maxBytes = options.maxBytes ?? 0;
    this.maxMessages = options.maxMessages ?? 0;
    this.overflow = options.overflow;
  }

  /** Payloads held. */
  get length(): number {
    return this.sizes.length - this.head;
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
    assertLivePayload('payload', source);
    const size = source.byteLength;
    if (this.maxBytes !== 0 && size > this.maxBytes) return false;

    if (this.overflow === 'reject') {
      if (!this.fitsBounds(size)) return false;
      return this.store(source);
    }

    const roomNow = this.hasRoom(size, 0);
    // Drop nothing for a payload that would not fit even in an empty queue.
    // It is still offered to the allocator, which counts and reports the
    // refusal as it does under 'reject'.
    if (!roomNow && !this.hasRoom(size, native.queueCharged(this.handle))) return this.store(source);
    while (!this.fitsBounds(size)) this.dropOldest();
    // Dropping before storing spares the allocator a refusal, which would be
    // counted and reported as a limit violation although the push succeeds.
    if (!roomNow) {
      while (this.length > 0 && !this.hasRoom(size, 0)) this.dropOldest();
    }
    // Other threads may take room of the thread and process limits meanwhile.
    while (!this.store(source)) {
      if (this.length === 0) return false;
      this.dropOldest();
    }
    return true;
  }

  /** Removes the oldest payload and returns a copy the caller owns; its queue
   * memory is freed and uncharged at once. Like Buffer.allocUnsafe, the copy
   * may be a view of a larger shared ArrayBuffer: for payloads up to 32 KiB,
   * one of at most 64 times the payload or 8 KiB. Copy it again to keep it
   * for long. */
  shift(): Buffer | undefined {
    if (this.length === 0) return undefined;
    const payload = outputBuffer(this.takeSize());
    native.queueShift(this.handle, payload);
    return payload;
  }

  /** Returns a copy of the oldest payload without removing it. */
  peek(): Buffer | undefined {
    return native.queuePeek(this.handle);
  }

  /** Frees every payload. */
  clear(): void {
    native.queueClear(this.handle);
    this.sizes = [];
    this.head = 0;
    this.payloadBytes = 0;
  }

  private takeSize(): number {
    const size = this.sizes[this.head];
    this.head += 1;
    this.payloadBytes -= size;
    // Compact now and then, so shifted slots do not pile up.
    if (this.head > 1024 && this.head * 2 > this.sizes.length) {
      this.sizes = this.sizes.slice(this.head);
      this.head = 0;
    }
    return size;
  }

  private fitsBounds(size: number): boolean {
    if (this.maxMessages !== 0 && this.length + 1 > this.maxMessages) return false;
    return this.maxBytes === 0 || this.payloadBytes + size <= this.maxBytes;
  }

  /** Returns true when `size` bytes, charged their usable size, fit in
   * every limit on the queue allocator's path once `freed` bytes of this
   * queue are freed. */
  private hasRoom(size: number, freed: number): boolean {
    // A removed allocator still reports its figures, and store() then
    // resolves the new one.
    this.token ??= this.resolveAllocators().tokens[1];
    return native.roomFor(this.token, size, freed);
  }

  private store(source: Uint8Array): boolean {
    let charge: number;
    try {
      this.token ??= this.resolveAllocators().tokens[1];
      charge = native.queuePush(this.handle, this.token, source);
    } catch (error) {
      if (!(error instanceof MqttAllocatorError) || error.code !== 'MQ_ERR_ALLOCATOR_NOT_FOUND') throw error;
      // The session was removed and registered again: resolve its new allocators.
      this.token = this.resolveAllocators(true).tokens[1];
      charge = native.queuePush(this.handle, this.token, source);
    }
    if (charge === 0) return false;
    this.sizes.push(source.byteLength);
    this.payloadBytes += source.byteLength;
    return true;
  }

  private dropOldest(): void {
    const size = this.takeSize();
    const copy = this.listenerCount('drop') > 0 ? outputBuffer(size) : undefined;
    native.queueShift(this.handle, copy, true);
    if (copy !== undefined) this.emit('drop', copy);
  }
}
