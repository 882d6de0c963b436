// Plain Buffers for payloads copied out of native storage (SessionQueue
// shift() and drops).
//
// Creating and collecting an ArrayBuffer costs far more than copying a
// payload of a few KiB into it. Buffer.allocUnsafe shares one only among
// payloads under 4 KiB, and its 8 KiB pool still makes a new one every few
// payloads. Here payloads are cut from larger shared slabs instead, the way
// Node pools small Buffers. A slab is sized for SLAB_PAYLOADS payloads like
// the one that opened it. A payload is only cut from a slab of at most
// 2 * SLAB_PAYLOADS times its own size (or MIN_SLAB, if larger), so a
// payload kept alive keeps at most that much memory reachable. Each part of
// a slab is handed out once and never reused, so no two Buffers ever share
// bytes.

import { Buffer } from 'node:buffer';

const SLAB_PAYLOADS = 32;
/** The smallest slab, the size of Node's own pool. */
const MIN_SLAB = 8 * 1024;
/** Payloads of this size or more get an ArrayBuffer of their own. */
const POOLED_UNTIL = 1024 * 1024;

let slab: ArrayBuffer | undefined;
let offset = 0;

/** Returns an uninitialized plain Buffer of `size` bytes that the caller fills. */
export function outputBuffer(size: number): Buffer {
  if (size === 0 || size >= POOLED_UNTIL) return Buffer.allocUnsafe(size);

  let current = slab;
  const fits = current !== undefined && current.byteLength - offset >= size;
  if (!fits || (current as ArrayBuffer).byteLength > Math.max(size * SLAB_PAYLOADS * 2, MIN_SLAB)) {
    current = Buffer.allocUnsafeSlow(Math.max(size * SLAB_PAYLOADS, MIN_SLAB)).buffer as ArrayBuffer;
    slab = current;
    offset = 0;
  }
  const buffer = Buffer.from(current as ArrayBuffer, offset, size);
  // Keep the next part 8-byte aligned, as Node does for its pool.
  offset += (size + 7) & ~7;
  return buffer;
}
