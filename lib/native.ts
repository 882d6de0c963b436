// Loads the addon and describes its interface. node-gyp-build is the loader
// because it looks in build/ (a local build by cmake-js or node-gyp) and in
// prebuilds/ (binaries shipped in the npm package). `bindings` does not look
// in prebuilds/.
import path from 'node:path';
import { threadId } from 'node:worker_threads';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const nodeGypBuild = require('node-gyp-build') as (root: string) => unknown;

/** The JavaScript handle of one native allocator. */
export interface NativeAllocator {
  readonly id: string;
  readonly tag: number;
  limit: number;
  readonly usage: number;
  readonly peak: number;
  readonly detached: boolean;
  stats(): NativeAllocatorStats;
  /** Returns a Buffer, an ArrayBuffer of one byte for size 0, or undefined when
   * `throwOnLimit` is false and a limit refused. */
  allocate(size: number, throwOnLimit?: boolean): Buffer | ArrayBuffer | undefined;
  createChild(id: string, tag: number, limit: number): NativeAllocator;
  findChild(id: string): NativeAllocator | undefined;
  removeChild(id: string): void;
  children(): NativeAllocator[];
}

export interface NativeAllocatorStats {
  usage: number;
  selfUsage: number;
  peak: number;
  limit: number;
  liveBlocks: number;
  totalAllocations: number;
  totalRequestedBytes: number;
  totalRefusals: number;
}

/** Context the addon passes with an error or a refused allocation. */
export interface NativeErrorContext {
  clientId?: string;
  allocatorId?: string;
  tag?: number;
  requested?: number;
  /** Usable bytes the refused allocation would have charged. */
  charge?: number;
  usage?: number;
  limit?: number;
}

export interface NativeClientUsage {
  clientId: string;
  threadId: string;
  usage: number;
  limit: number;
  connected: boolean;
}

export interface NativeHierarchyNode {
  id: string;
  tag: number;
  usage: number;
  peak: number;
  limit: number;
  selfUsage: number;
  liveBlocks: number;
  children: NativeHierarchyNode[];
}

export interface NativeThreadStats {
  sessionUsage: number;
  queueUsage: number;
  workerUsage: number;
  cacheUsage: number;
  totalUsage: number;
  sessionCount: number;
  liveBuffers: number;
}

export interface NativeBackendInfo {
  name: 'tcmalloc' | 'system';
  source: string;
  version?: string;
  library?: string;
  fallbackReason?: string;
  heap?: Record<string, number>;
}

/** An opaque reference to a native allocator, for the allocation hot path. */
export type NativeAllocatorToken = { readonly __token: unique symbol };

/** An opaque native queue of payloads. */
export type NativeQueueHandle = { readonly __queue: unique symbol };

/** [session, queue, worker, resumed] */
export type NativeSessionAllocators = [NativeAllocator, NativeAllocator, NativeAllocator, boolean];

export interface NativeAddon {
  errorCodes: Array<{ name: string; value: number; message: string }>;
  memoryTags: string[];
  initThread(name: string): NativeAllocator;
  setHooks(
    createError: (code: number, detail: string, context: NativeErrorContext) => Error,
    onLimitExceeded: (context: NativeErrorContext) => void,
  ): void;
  registerSession(clientId: string, memoryLimit?: number, expiry?: number): NativeSessionAllocators;
  unregisterSession(clientId: string): void;
  findSession(clientId: string): NativeSessionAllocators | undefined;
  removeSession(clientId: string): boolean;
  cleanupExpired(): number;
  setClientLimit(clientId: string, limit: number): void;
  clearClientLimit(clientId: string): void;
  clientLimit(clientId: string): number;
  setClientLimitPatterns(patterns: Array<[string, number]>): void;
  defaultClientLimit(limit?: number): number;
  threadLimit(limit?: number): number;
  defaultExpiry(seconds?: number): number;
  globalLimit(limit?: number): number;
  globalUsage(): number;
  clientUsages(): NativeClientUsage[];
  clientUsage(clientId: string): NativeClientUsage | undefined;
  tagUsage(): number[];
  limitViolations(): number[];
  hierarchy(): NativeHierarchyNode;
  threadStats(): NativeThreadStats;
  backendInfo(): NativeBackendInfo;
  selectBackend(name: string): void;
  claimBackendNotice(): boolean;
  releaseFreeMemory(): void;
  messageCache(): NativeAllocator;
  release(buffer: unknown): void;
  /** release() for a buffer of the token's allocator or of one below it. */
  releaseFrom(token: NativeAllocatorToken, buffer: unknown): void;
  isSessionBuffer(buffer: unknown): boolean;
  /** Benchmark only: creates one external Buffer with no accounting, and
   * detaches it, or returns it alive when `keep` is true. */
  externalBufferFloor(size: number, keep?: boolean): Buffer | undefined;
  allocatorToken(allocator: NativeAllocator): NativeAllocatorToken;
  /** Returns the payload's handle, or 0 when a limit refused it. */
  payloadStore(token: NativeAllocatorToken, payload: Uint8Array): number;
  /** One number: the bytes charged for the payload that payloadStore stored last. */
  readonly payloadCharge: Float64Array;
  /** True when a block for `size` bytes fits in every limit from the
   * token's allocator up to the root once `freed` bytes charged to that
   * allocator are released. */
  roomFor(token: NativeAllocatorToken, size: number, freed: number): boolean;
  payloadSize(handle: number): number;
  payloadRead(handle: number, target: Buffer): void;
  payloadFree(handle: number): void;
  /** payloadRead, then payloadFree; a target of the wrong size throws and frees nothing. */
  payloadTake(handle: number, target: Buffer): void;
  queueCreate(): NativeQueueHandle;
  /** Returns the bytes charged, or 0 when a limit refused the payload. */
  queuePush(queue: NativeQueueHandle, token: NativeAllocatorToken, payload: Uint8Array): number;
  /** Frees the oldest payload, copying it first into `target` when given
   * (a Buffer of exactly its size). `dropped` counts it in queueDrops(). */
  queueShift(queue: NativeQueueHandle, target: Buffer | undefined, dropped?: boolean): void;
  queuePeek(queue: NativeQueueHandle): Buffer | undefined;
  queueClear(queue: NativeQueueHandle): void;
  queueCharged(queue: NativeQueueHandle): number;
  /** Payloads dropped under 'drop-oldest' by the queues of all threads since the process started. */
  queueDrops(): number;
  /** Same results as NativeAllocator.allocate. */
  allocateFrom(token: NativeAllocatorToken, size: number, throwOnLimit: boolean): Buffer | ArrayBuffer | undefined;
}

// The addon's exports object is built property by property and ends up in
// V8's slow dictionary mode. A copy has fast properties, which speeds up
// the calls made per message.
export const native = { ...(nodeGypBuild(path.join(__dirname, '..')) as NativeAddon) };

/** This thread's allocator, registered under the global root on first load. */
export const threadAllocator = native.initThread(`thread-${threadId}`);
