// Allocator handles: the public face of one node of the allocator hierarchy.
import { Buffer } from 'node:buffer';

import { MemoryTag, MemoryTagName, memoryTagName } from './codes';
import { invalidArgument } from './errors';
import { native, NativeAllocator, NativeAllocatorStats, NativeAllocatorToken } from './native';
import { assertBytes, assertName } from './validate';

/** Turns the addon's result into a Buffer; an empty allocation arrives as a
 * one-byte ArrayBuffer, wrapped here in an empty view. */
export function toBuffer(result: Buffer | ArrayBuffer): Buffer {
  return result instanceof ArrayBuffer ? Buffer.from(result, 0, 0) : result;
}

/** Frees a buffer of this package now. `buffer` is the Buffer, any view of
 * all of its bytes, or its ArrayBuffer. Anything else throws and frees
 * nothing, as does a buffer of an allocator outside `owner`'s subtree when
 * `owner` is given. */
export function releaseBuffer(buffer: Buffer | ArrayBufferView | ArrayBuffer, owner?: NativeAllocatorToken): void {
  try {
    if (owner === undefined) {
      native.release(buffer);
    } else {
      native.releaseFrom(owner, buffer);
    }
  } catch (error) {
    // Checked only after the addon rejected it, because this runs once per buffer.
    if (!ArrayBuffer.isView(buffer) && !(buffer instanceof ArrayBuffer)) {
      throw invalidArgument('buffer', buffer, 'a Buffer allocated by this package');
    }
    throw error;
  }
}

/** Resolves a tag given by name ('SESSION_QUEUE') or value (7). */
export function resolveTag(tag: MemoryTagName | number): number {
  if (typeof tag === 'number' && memoryTagName(tag) !== undefined) return tag;
  if (typeof tag === 'string' && Object.prototype.hasOwnProperty.call(MemoryTag, tag)) {
    return MemoryTag[tag];
  }
  throw invalidArgument('tag', tag, `a MemoryTag name or value (${Object.keys(MemoryTag).join(', ')})`);
}

/**
 * One allocator of the hierarchy. Its usage counts the usable bytes of every
 * live block allocated from it or from any allocator below it.
 */
export class AllocatorHandle {
  // Made on the first release().
  private token: NativeAllocatorToken | undefined;

  /** @internal */
  constructor(readonly native: NativeAllocator) {}

  get id(): string {
    return this.native.id;
  }

  get tag(): MemoryTagName {
    return memoryTagName(this.native.tag) as MemoryTagName;
  }

  /** Byte limit, 0 = unlimited. Lowering it below usage frees nothing. */
  get limit(): number {
    return this.native.limit;
  }

  set limit(bytes: number) {
    assertBytes('limit', bytes);
    this.native.limit = bytes;
  }

  get usage(): number {
    return this.native.usage;
  }

  get peak(): number {
    return this.native.peak;
  }

  /** True once the allocator was removed from the hierarchy; it then refuses allocations. */
  get detached(): boolean {
    return this.native.detached;
  }

  stats(): NativeAllocatorStats {
    return this.native.stats();
  }

  /** Allocates a Buffer of `size` bytes; throws MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED when a limit refuses. */
  allocate(size: number): Buffer {
    assertBytes('size', size);
    return toBuffer(this.native.allocate(size, true) as Buffer | ArrayBuffer);
  }

  /** Like allocate(), but returns undefined when a limit refuses. */
  tryAllocate(size: number): Buffer | undefined {
    assertBytes('size', size);
    const result = this.native.allocate(size, false);
    return result === undefined ? undefined : toBuffer(result);
  }

  /** Frees a buffer of this allocator, or of one below it, now; see
   * ThreadLocalSessionManager.release. Any other buffer throws
   * MQ_ERR_INVALID_ARGS and is not freed. */
  release(buffer: Buffer | ArrayBufferView | ArrayBuffer): void {
    this.token ??= native.allocatorToken(this.native);
    releaseBuffer(buffer, this.token);
  }

  createChild(id: string, tag: MemoryTagName | number, limit = 0): AllocatorHandle {
    assertName('id', id);
    const tagValue = resolveTag(tag);
    assertBytes('limit', limit);
    return new AllocatorHandle(this.native.createChild(id, tagValue, limit));
  }

  /** Removes a child; its live buffers stay valid and charged until released. */
  removeChild(id: string): void {
    assertName('id', id);
    this.native.removeChild(id);
  }

  children(): AllocatorHandle[] {
    return this.native.children().map((child) => new AllocatorHandle(child));
  }
}
