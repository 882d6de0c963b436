// GlobalSessionManager: the process-wide view. Every thread gets its own
// handle from instance(); all handles read and change the same native state.
import { EventEmitter } from 'node:events';
import { Logger } from 'pino';

import { MemoryTagName, memoryTagName, memoryTagNames } from './codes';
import { createNativeError, errorContext, invalidArgument } from './errors';
import { AllocatorNode, formatAllocatorNode, toAllocatorNode } from './hierarchy';
import { getLogger, RefusalLog, setLogger } from './logging';
import { native, NativeBackendInfo, NativeErrorContext } from './native';
import { ThreadLocalSessionManager } from './thread-manager';
import { assertBytes, assertClientId, assertInterval, assertKnownOptions, assertLogger, assertName, assertSeconds } from './validate';

/** Payload of the 'limitExceeded' event. */
export interface LimitExceededEvent {
  clientId?: string;
  /** Tag of the allocator whose limit refused. */
  tag: MemoryTagName;
  /** Bytes the caller asked for. */
  requested: number;
  /** Usage and limit of the allocator that refused. */
  usage: number;
  limit: number;
  allocatorId: string;
}

export interface ClientMemoryInfo {
  clientId: string;
  threadId: string;
  usage: number;
  limit: number;
  connected: boolean;
}

export interface LimitPatternEntry {
  /** Glob over client ids: `*` any run of characters, `?` one character. */
  pattern: string;
  limit: number;
}

const PATTERN_KEYS: readonly (keyof LimitPatternEntry)[] = ['pattern', 'limit'];

export type BackendInfo = NativeBackendInfo;

export interface GlobalSessionManagerEvents {
  limitExceeded: [event: LimitExceededEvent];
}

let instanceOfThread: GlobalSessionManager | undefined;
let threadManager: ThreadLocalSessionManager | undefined;
let cleanupTimer: NodeJS.Timeout | undefined;
const refusalLog = new RefusalLog();

function toTagRecord(values: number[]): Record<MemoryTagName, number> {
  const record = {} as Record<MemoryTagName, number>;
  memoryTagNames().forEach((name, index) => {
    record[name] = values[index];
  });
  return record;
}

export class GlobalSessionManager extends EventEmitter<GlobalSessionManagerEvents> {
  /** Returns this thread's handle on the process-wide state. */
  static instance(): GlobalSessionManager {
    instanceOfThread ??= new GlobalSessionManager();
    return instanceOfThread;
  }

  private constructor() {
    super();
  }

  get logger(): Logger {
    return getLogger();
  }

  /** Replaces the package's logger (for example with a child logger). */
  setLogger(logger: Logger): void {
    assertLogger('logger', logger);
    setLogger(logger);
  }

  /**
   * Sets a client's limit in bytes. 0 makes the client unlimited,
   * overriding the patterns and the default (clearClientMemoryLimit()
   * returns it to them). Applies at once to a registered
   * client, even below its current usage (then new allocations fail and
   * nothing is freed), and otherwise when the client registers.
   */
  setClientMemoryLimit(clientId: string, bytes: number): void {
    assertClientId(clientId);
    assertBytes('bytes', bytes);
    native.setClientLimit(clientId, bytes);
    this.logger.info({ clientId, limit: bytes }, 'client memory limit set');
  }

  /**
   * Forgets a limit set with setClientMemoryLimit. A registered client falls
   * back at once to its pattern limit or the default.
   */
  clearClientMemoryLimit(clientId: string): void {
    assertClientId(clientId);
    native.clearClientLimit(clientId);
    this.logger.info({ clientId }, 'client memory limit cleared');
  }

  /** Returns the client's limit, or the one it would get if it registered now. */
  getClientMemoryLimit(clientId: string): number {
    assertClientId(clientId);
    return native.clientLimit(clientId);
  }

  /** Limit of the global root, across all threads (0 = unlimited). */
  setGlobalMemoryLimit(bytes: number): void {
    assertBytes('bytes', bytes);
    native.globalLimit(bytes);
    this.logger.info({ limit: bytes }, 'global memory limit set');
  }

  getGlobalMemoryLimit(): number {
    return native.globalLimit();
  }

  getGlobalMemoryUsage(): number {
    return native.globalUsage();
  }

  /**
   * Limit for clients with neither an exact nor a pattern limit (0 =
   * unlimited); applies at once to registered clients that use it.
   */
  setDefaultClientMemoryLimit(bytes: number): void {
    assertBytes('bytes', bytes);
    native.defaultClientLimit(bytes);
  }

  getDefaultClientMemoryLimit(): number {
    return native.defaultClientLimit();
  }

  /**
   * Limits by client-id pattern, tried in order after exact ids set with
   * setClientMemoryLimit; the first match wins. Applies at once to
   * registered clients whose limit came from a pattern or the default, and
   * to clients that register afterwards.
   */
  setClientMemoryLimitPatterns(patterns: LimitPatternEntry[]): void {
    if (!Array.isArray(patterns)) {
      throw invalidArgument('patterns', patterns, 'an array of { pattern, limit }');
    }
    const pairs = patterns.map((entry, index): [string, number] => {
      if (entry === null || typeof entry !== 'object') {
        throw invalidArgument(`patterns[${index}]`, entry, 'an object { pattern, limit }');
      }
      assertKnownOptions(`patterns[${index}]`, entry, PATTERN_KEYS);
      assertName(`patterns[${index}].pattern`, entry.pattern);
      assertBytes(`patterns[${index}].limit`, entry.limit);
      return [entry.pattern, entry.limit];
    });
    native.setClientLimitPatterns(pairs);
  }

  /** Limit of every thread's allocator, existing and future (0 = unlimited). */
  setThreadMemoryLimit(bytes: number): void {
    assertBytes('bytes', bytes);
    native.threadLimit(bytes);
  }

  getThreadMemoryLimit(): number {
    return native.threadLimit();
  }

  /** Expiry interval in seconds for sessions registered without one. */
  setDefaultSessionExpiry(seconds: number): void {
    assertSeconds('seconds', seconds);
    native.defaultExpiry(seconds);
  }

  getDefaultSessionExpiry(): number {
    return native.defaultExpiry();
  }

  /** Usage of every client on every thread, connected or waiting to expire. */
  getClientMemoryUsage(): Map<string, number> {
    return new Map(native.clientUsages().map((entry) => [entry.clientId, entry.usage]));
  }

  /** Usage, limit, thread and connection state of every client on every thread. */
  getClientMemoryDetails(): ClientMemoryInfo[] {
    return native.clientUsages();
  }

  /**
   * True when the client has a limit and its usage has reached it (so no
   * allocation fits) or passed it (after the limit was lowered). Throws
   * MQ_ERR_ALLOCATOR_NOT_FOUND for a client that is not registered.
   */
  isClientMemoryLimitExceeded(clientId: string): boolean {
    assertClientId(clientId);
    const entry = native.clientUsage(clientId);
    if (entry === undefined) {
      throw createNativeError(-702, 'client is not registered on any thread', { clientId });
    }
    return entry.limit !== 0 && entry.usage >= entry.limit;
  }

  getThreadManager(): ThreadLocalSessionManager {
    threadManager ??= new ThreadLocalSessionManager();
    return threadManager;
  }

  /** Removes the allocators of every expired session on every thread; returns how many. */
  cleanupExpiredAllocators(): number {
    const removed = native.cleanupExpired();
    if (removed > 0) this.logger.info({ removed }, 'expired session allocators removed');
    return removed;
  }

  /** Calls cleanupExpiredAllocators() every `intervalSeconds` (0 stops). The timer does not keep the process alive. */
  startExpiryCleanup(intervalSeconds: number): void {
    assertInterval('intervalSeconds', intervalSeconds, 'seconds');
    this.stopExpiryCleanup();
    if (intervalSeconds === 0) return;
    cleanupTimer = setInterval(() => this.cleanupExpiredAllocators(), intervalSeconds * 1000);
    cleanupTimer.unref();
  }

  stopExpiryCleanup(): void {
    if (cleanupTimer !== undefined) clearInterval(cleanupTimer);
    cleanupTimer = undefined;
  }

  /** Bytes in use now, by the tag of the allocator they came from. */
  getTagUsage(): Record<MemoryTagName, number> {
    return toTagRecord(native.tagUsage());
  }

  /** Allocations refused since the process started, by the tag of the allocator whose limit refused. */
  getLimitViolations(): Record<MemoryTagName, number> {
    return toTagRecord(native.limitViolations());
  }

  /** Payloads that SessionQueues dropped under 'drop-oldest' since the
   * process started, on all threads. Each was also emitted as a 'drop' event. */
  getQueueDrops(): number {
    return native.queueDrops();
  }

  getAllocatorHierarchy(): AllocatorNode {
    return toAllocatorNode(native.hierarchy());
  }

  /** Formats the hierarchy as a text tree with usage against limit per node. */
  formatAllocatorHierarchy(): string {
    return formatAllocatorNode(this.getAllocatorHierarchy());
  }

  /** Returns the backend in use and, for tcmalloc, its heap figures. */
  getBackendInfo(): BackendInfo {
    return native.backendInfo();
  }

  /** Chooses the backend ('tcmalloc', 'system' or 'auto'). Only possible
   * while no block is allocated on any thread. An allocation that starts on
   * another thread meanwhile either makes this throw or uses the new backend. */
  selectBackend(name: 'tcmalloc' | 'system' | 'auto'): void {
    native.selectBackend(name);
    this.logger.info({ backend: native.backendInfo() }, 'memory backend selected');
  }

  /** Returns free backend memory to the operating system, where the backend can. */
  releaseFreeMemory(): void {
    native.releaseFreeMemory();
  }
}

/** Throws unless `value` is a GlobalSessionManager, for the functions that
 * take one in place of GlobalSessionManager.instance(). */
export function assertManager(name: string, value: unknown): asserts value is GlobalSessionManager {
  if (!(value instanceof GlobalSessionManager)) {
    throw invalidArgument(name, value, 'a GlobalSessionManager, such as GlobalSessionManager.instance()');
  }
}

/** Logs the refusals counted since the last summary line at once, for a
 * process about to stop before the summary's interval ends. */
export function flushRefusalLog(): void {
  refusalLog.flush();
}

// The addon reports refusals synchronously, on the thread that asked, before
// it throws or returns undefined.
function onLimitExceeded(context: NativeErrorContext): void {
  const fields = errorContext(context);
  refusalLog.record(context.clientId, fields.tag, context.limit);
  const manager = GlobalSessionManager.instance();
  if (manager.listenerCount('limitExceeded') === 0) return;
  manager.emit('limitExceeded', {
    clientId: context.clientId,
    tag: fields.tag ?? (memoryTagName(0) as MemoryTagName),
    requested: context.requested ?? 0,
    usage: context.usage ?? 0,
    limit: context.limit ?? 0,
    allocatorId: context.allocatorId ?? '',
  });
}

native.setHooks(createNativeError, onLimitExceeded);

const BACKEND_VARIABLE = 'MQTT_ALLOCATOR_BACKEND';
const BACKEND_SETTINGS = ['system', 'tcmalloc', 'auto'];

const backend = native.backendInfo();
if (native.claimBackendNotice()) {
  // The addon ignores a setting it does not know, and reports it only in a
  // fallback reason, when it ends on the system allocator.
  const setting = process.env[BACKEND_VARIABLE];
  if (setting && !BACKEND_SETTINGS.includes(setting)) {
    getLogger().warn(
      { variable: BACKEND_VARIABLE, value: setting, backend: backend.name },
      `invalid ${BACKEND_VARIABLE} ${JSON.stringify(setting)}: expected one of ${BACKEND_SETTINGS.join(', ')}; it was ignored`,
    );
  }
  if (backend.fallbackReason !== undefined) {
    getLogger().warn({ backend: backend.name, reason: backend.fallbackReason }, 'tcmalloc is not in use; using the system allocator');
  } else {
    getLogger().info({ backend: backend.name, version: backend.version, source: backend.source }, 'memory backend selected');
  }
}
