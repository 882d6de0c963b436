// The allocator-level utility the session managers are built on: finds or
// creates the allocators of this thread's sessions and caches their handles.
import { AllocatorHandle } from './allocator';
import { MqttAllocatorError, describeValue } from './errors';
import { native, NativeAllocator, NativeAllocatorToken, NativeSessionAllocators } from './native';
import { assertBytes, assertClientId } from './validate';

/** The native allocators of one session. */
export interface SessionAllocatorSet {
  session: NativeAllocator;
  queue: NativeAllocator;
  worker: NativeAllocator;
  /** Tokens of session, queue and worker, in that order. */
  tokens: readonly [NativeAllocatorToken, NativeAllocatorToken, NativeAllocatorToken];
}

export type SessionComponent = 'session' | 'queue' | 'worker';

export function sessionNotFound(clientId: string): MqttAllocatorError {
  return new MqttAllocatorError(
    'MQ_ERR_ALLOCATOR_NOT_FOUND',
    `client ${describeValue(clientId)} has no session on this thread`,
    { clientId },
  );
}

function toSet(allocators: NativeSessionAllocators): SessionAllocatorSet {
  const [session, queue, worker] = allocators;
  const tokens = [native.allocatorToken(session), native.allocatorToken(queue), native.allocatorToken(worker)] as const;
  return { session, queue, worker, tokens };
}

export class SessionAllocatorManager {
  // Keyed by client id in a Map, never a plain object: ids are untrusted
  // input and may be "__proto__" or "constructor".
  private readonly sessions = new Map<string, SessionAllocatorSet>();

  /**
   * Registers a session on this thread (or resumes the one it holds) and
   * returns its allocators. `memoryLimit` and `expiryInterval` are applied
   * when given.
   * @internal
   */
  register(clientId: string, memoryLimit?: number, expiryInterval?: number): { set: SessionAllocatorSet; resumed: boolean } {
    const result = native.registerSession(clientId, memoryLimit, expiryInterval);
    const set = toSet(result);
    this.sessions.set(clientId, set);
    return { set, resumed: result[3] };
  }

  /**
   * Returns the session's allocators, or undefined when this thread holds no
   * session for the client. A cached entry whose allocators were removed (by
   * expiry cleanup on any thread) is looked up again.
   * @internal
   */
  find(clientId: string): SessionAllocatorSet | undefined {
    const cached = this.sessions.get(clientId);
    if (cached !== undefined && !cached.session.detached) return cached;

    const found = native.findSession(clientId);
    if (found === undefined) {
      this.sessions.delete(clientId);
      return undefined;
    }
    const set = toSet(found);
    this.sessions.set(clientId, set);
    return set;
  }

  /**
   * Returns the cached allocators without checking that they are still in
   * the hierarchy. Allocating from removed ones fails with
   * MQ_ERR_ALLOCATOR_NOT_FOUND, after which the caller looks them up again.
   * @internal
   */
  cached(clientId: string): SessionAllocatorSet | undefined {
    return this.sessions.get(clientId);
  }

  /** @internal */
  require(clientId: string): SessionAllocatorSet {
    const set = this.find(clientId);
    if (set === undefined) throw sessionNotFound(clientId);
    return set;
  }

  /**
   * Returns the client's session allocator, registering the session on this
   * thread when it has none. A given `limit` (0 = unlimited) is applied.
   */
  getSessionAllocator(clientId: string, limit?: number): AllocatorHandle {
    assertClientId(clientId);
    if (limit !== undefined) assertBytes('limit', limit);
    const existing = this.find(clientId);
    if (existing === undefined) return new AllocatorHandle(this.register(clientId, limit).set.session);
    if (limit !== undefined) native.setClientLimit(clientId, limit);
    return new AllocatorHandle(existing.session);
  }

  getSessionQueueAllocator(clientId: string): AllocatorHandle {
    assertClientId(clientId);
    return new AllocatorHandle(this.require(clientId).queue);
  }

  getSessionWorkerAllocator(clientId: string): AllocatorHandle {
    assertClientId(clientId);
    return new AllocatorHandle(this.require(clientId).worker);
  }

  getMessageCacheAllocator(): AllocatorHandle {
    return new AllocatorHandle(native.messageCache());
  }

  /**
   * Removes the client's allocators now, expired or not. Live buffers stay
   * valid and charged to the thread and the root until released. Returns
   * false when this thread holds no session for the client.
   */
  cleanupSessionAllocators(clientId: string): boolean {
    assertClientId(clientId);
    this.sessions.delete(clientId);
    return native.removeSession(clientId);
  }

  /** Bytes in use by the session and its queue and worker allocators. */
  getSessionMemoryUsage(clientId: string): number {
    assertClientId(clientId);
    return this.require(clientId).session.usage;
  }

  /** True when the session has a limit and its usage has reached it. */
  isSessionMemoryLimitExceeded(clientId: string): boolean {
    assertClientId(clientId);
    const session = this.require(clientId).session;
    return session.limit !== 0 && session.usage >= session.limit;
  }

  /** @internal */
  forget(clientId: string): void {
    this.sessions.delete(clientId);
  }
}
