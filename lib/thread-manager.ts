// ThreadLocalSessionManager: the sessions of the calling thread and the
// buffers allocated for them.
import { Buffer } from 'node:buffer';

import { releaseBuffer, toBuffer } from './allocator';
import { invalidArgument, MqttAllocatorError } from './errors';
import { native, NativeAllocatorToken, NativeThreadStats } from './native';
import { SessionAllocatorManager, SessionAllocatorSet, SessionComponent } from './session-allocator-manager';
import { SessionQueue, SessionQueueOptions } from './session-queue';
import { assertBytes, assertClientId, assertKnownOptions, assertLivePayload, assertSeconds } from './validate';

export interface RegisterSessionOptions {
  /** Byte limit of the client's session (0 = unlimited). It replaces any
   * limit set for the id before, for this session only. Without it the
   * session gets the configured limit for the id (exact, pattern or default). */
  memoryLimit?: number;
  /** Seconds the session outlives its connection after unregisterSession,
   * as the MQTT 5 Session Expiry Interval: 0 ends it at once, 4294967295
   * never. Defaults to the process-wide default expiry. */
  expiryInterval?: number;
}

const SESSION_OPTIONS: readonly (keyof RegisterSessionOptions)[] = ['memoryLimit', 'expiryInterval'];

// The addon checks a number itself: an integer, live, of this thread. This
// names a value of another type, which the addon cannot describe.
function assertHandle(handle: unknown): asserts handle is PayloadHandle {
  if (typeof handle !== 'number') {
    throw invalidArgument('handle', handle, 'a payload handle (a number that storePayload returned)');
  }
}

/** A stored payload of storePayload(), valid on the thread that stored it. */
export type PayloadHandle = number;

export interface SessionRegistration {
  clientId: string;
  /** True when this thread already held the session and it was resumed. */
  resumed: boolean;
  limit: number;
}

export interface MemoryStats {
  /** Bytes allocated from the session allocators themselves, for the
   * current sessions of this thread. */
  sessionUsage: number;
  /** The same, from their queue allocators. */
  queueUsage: number;
  /** The same, from their worker allocators. */
  workerUsage: number;
  /** Message-cache bytes allocated by this thread. */
  cacheUsage: number;
  /** Every byte this thread's allocations still charge: the fields above,
   * plus buffers and payloads that outlived their session, which only the
   * thread, the process and getTagUsage() still count. */
  totalUsage: number;
  /** Sessions held by this thread, connected or waiting to expire. */
  sessionCount: number;
  /** Buffers of this thread not yet released or collected. */
  liveBuffers: number;
}

/** Returns the index of a component in SessionAllocatorSet.tokens. */
function componentIndex(component: SessionComponent): 0 | 1 | 2 {
  if (component === 'session') return 0;
  if (component === 'queue') return 1;
  if (component === 'worker') return 2;
  throw invalidArgument('component', component, "'session', 'queue' or 'worker'");
}

export class ThreadLocalSessionManager {
  readonly sessionAllocators = new SessionAllocatorManager();

  /**
   * Registers a client's session on this thread, or resumes the one this
   * thread holds (cancelling a pending expiry) and applies the new options.
   * Throws MQ_ERR_ALLOCATOR_CREATE when another thread holds the client.
   */
  registerSession(clientId: string, options: RegisterSessionOptions = {}): SessionRegistration {
    assertClientId(clientId);
    if (options === null || typeof options !== 'object') {
      throw invalidArgument('options', options, 'an object with memoryLimit and expiryInterval');
    }
    assertKnownOptions('options', options, SESSION_OPTIONS);
    if (options.memoryLimit !== undefined) assertBytes('memoryLimit', options.memoryLimit);
    if (options.expiryInterval !== undefined) assertSeconds('expiryInterval', options.expiryInterval);

    const { set, resumed } = this.sessionAllocators.register(clientId, options.memoryLimit, options.expiryInterval);
    return { clientId, resumed, limit: set.session.limit };
  }

  /**
   * Ends the client's connection: the session expires after its expiry
   * interval and cleanupExpiredAllocators() then removes its allocators. An
   * interval of 0 removes them at once. Buffers still alive stay valid and
   * charged until released or collected.
   */
  unregisterSession(clientId: string): void {
    assertClientId(clientId);
    native.unregisterSession(clientId);
  }

  /** True when this thread holds a session for the client. */
  hasSession(clientId: string): boolean {
    assertClientId(clientId);
    return this.sessionAllocators.find(clientId) !== undefined;
  }

  /**
   * Allocates a Buffer of `size` bytes from the client's session, queue or
   * worker allocator. Throws MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED when a limit on
   * the path (component, session, thread, root) refuses.
   */
  allocate(clientId: string, size: number, component: SessionComponent = 'session'): Buffer {
    return this.allocateFor(clientId, size, component, true) as Buffer;
  }

  /** Like allocate(), but returns undefined when a limit refuses. */
  tryAllocate(clientId: string, size: number, component: SessionComponent = 'session'): Buffer | undefined {
    return this.allocateFor(clientId, size, component, false);
  }

  /**
   * Copies `payload` into the client's session, queue (default) or worker
   * allocator and keeps it native, without a Buffer: the cheapest way to hold
   * bytes that JavaScript reads again only later, such as a stored message.
   * Returns a handle for loadPayload() and freePayload(), or undefined when
   * a limit refuses it. Handles are valid on this thread only.
   */
  storePayload(clientId: string, payload: Uint8Array, component: SessionComponent = 'queue'): PayloadHandle | undefined {
    if (!(payload instanceof Uint8Array)) {
      throw invalidArgument('payload', payload, 'a Buffer or Uint8Array');
    }
    assertLivePayload('payload', payload);
    const index = componentIndex(component);
    let handle: number;
    try {
      handle = native.payloadStore(this.token(clientId, index), payload);
    } catch (error) {
      if (!isRemoved(error)) throw error;
      handle = native.payloadStore(this.token(clientId, index, true), payload);
    }
    return handle === 0 ? undefined : handle;
  }

  /** Bytes charged (the backend's usable size) for the payload that the
   * last successful storePayload() call of this thread stored. */
  storedPayloadCharge(): number {
    return native.payloadCharge[0];
  }

  /**
   * Returns true when a block for `size` bytes would fit in every limit from
   * the client's session, queue (default) or worker allocator up to the
   * process, once `freed` bytes charged to that allocator are released. The
   * check counts the usable size the block would be charged, as an
   * allocation does. Use it to decide whether dropping stored data can make
   * room before dropping any.
   */
  hasRoomFor(clientId: string, size: number, freed = 0, component: SessionComponent = 'queue'): boolean {
    assertBytes('size', size);
    assertBytes('freed', freed);
    return native.roomFor(this.token(clientId, componentIndex(component)), size, freed);
  }

  /** Returns a copy of a stored payload as a plain Buffer the caller owns.
   * A caller that kept the payload's size passes it as `size`, which saves
   * asking for it; a size that does not match throws, copying nothing. */
  loadPayload(handle: PayloadHandle, size?: number): Buffer {
    assertHandle(handle);
    if (size !== undefined) assertBytes('size', size);
    const payload = Buffer.allocUnsafe(size ?? native.payloadSize(handle));
    native.payloadRead(handle, payload);
    return payload;
  }

  /** Like loadPayload(), and frees the stored payload in the same native
   * call. Throws, copying and freeing nothing, for a handle that is not live
   * or a size that does not match. */
  takePayload(handle: PayloadHandle, size?: number): Buffer {
    assertHandle(handle);
    if (size !== undefined) assertBytes('size', size);
    const payload = Buffer.allocUnsafe(size ?? native.payloadSize(handle));
    native.payloadTake(handle, payload);
    return payload;
  }

  /** Size in bytes of a stored payload. */
  payloadSize(handle: PayloadHandle): number {
    assertHandle(handle);
    return native.payloadSize(handle);
  }

  /** Frees a stored payload now. Throws, freeing nothing, for a handle that
   * was freed already or belongs to another thread. */
  freePayload(handle: PayloadHandle): void {
    assertHandle(handle);
    native.payloadFree(handle);
  }

  /** Allocates a Buffer from the process-wide message cache allocator. */
  allocateCache(size: number): Buffer {
    assertBytes('size', size);
    return toBuffer(native.messageCache().allocate(size, true) as Buffer | ArrayBuffer);
  }

  /**
   * Frees a buffer now: the memory returns to the backend, usage drops at
   * once, and the buffer and every view on it are detached (length 0).
   * `buffer` is the Buffer that allocate() returned, any view of all of its
   * bytes, or its ArrayBuffer. Throws, freeing nothing, for a view of part of
   * it, a buffer released already or one not allocated by this package on
   * this thread.
   *
   * Release only when nothing else uses the memory: a Buffer passed to
   * socket.write() or fs.write() must not be released before the write's
   * callback, because libuv keeps the raw pointer until then.
   */
  release(buffer: Buffer | ArrayBufferView | ArrayBuffer): void {
    releaseBuffer(buffer);
  }

  /** True when `buffer` is a live buffer of this package on this thread. */
  isSessionBuffer(buffer: unknown): boolean {
    return native.isSessionBuffer(buffer);
  }

  getMemoryStatistics(): MemoryStats {
    const stats: NativeThreadStats = native.threadStats();
    return stats;
  }

  getSessionMemoryUsage(clientId: string): number {
    return this.sessionAllocators.getSessionMemoryUsage(clientId);
  }

  /** Creates a FIFO of payloads held in the client's queue allocator. */
  createSessionQueue(clientId: string, options: SessionQueueOptions): SessionQueue {
    assertClientId(clientId);
    this.sessionAllocators.require(clientId);
    const resolve = (fresh = false): SessionAllocatorSet =>
      (fresh ? undefined : this.sessionAllocators.cached(clientId)) ?? this.sessionAllocators.require(clientId);
    return new SessionQueue(clientId, resolve, options);
  }

  // The hot path: a size check, a Map lookup and one native call, with no
  // closure made per call. Ids found in the cache were validated when they
  // were registered. When expiry cleanup removed the cached allocators, the
  // session is looked up again and the call made once more.
  private allocateFor(clientId: string, size: number, component: SessionComponent, throwOnLimit: boolean): Buffer | undefined {
    assertBytes('size', size);
    const index = componentIndex(component);
    let result;
    try {
      result = native.allocateFrom(this.token(clientId, index), size, throwOnLimit);
    } catch (error) {
      if (!isRemoved(error)) throw error;
      result = native.allocateFrom(this.token(clientId, index, true), size, throwOnLimit);
    }
    if (result === undefined) return undefined;
    return size === 0 ? toBuffer(result) : (result as Buffer);
  }

  // Returns the token of a component allocator of the client's session, as
  // cached, or looked up again when `fresh` (after expiry cleanup removed
  // the cached allocators). Throws when this thread has no such session.
  private token(clientId: string, index: 0 | 1 | 2, fresh = false): NativeAllocatorToken {
    const cached = fresh ? undefined : this.sessionAllocators.cached(clientId);
    if (cached !== undefined) return cached.tokens[index];
    assertClientId(clientId);
    return this.sessionAllocators.require(clientId).tokens[index];
  }
}

/** True for the error of an allocator that expiry cleanup removed. */
function isRemoved(error: unknown): boolean {
  return error instanceof MqttAllocatorError && error.code === 'MQ_ERR_ALLOCATOR_NOT_FOUND';
}
