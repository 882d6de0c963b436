// Plain Buffers for payloads copied out of native storage (SessionQueue
// shift() and drops).
//
// Creating and collecting an ArrayBuffer costs far more than copying a
// payload of a few KiB into it. Buffer.allocUnsafe shares one only among
// payloads under 4 KiB, and its 8 KiB pool still makes a new one every few
// payloads. Here payloads are cut from larger shared slabs instead, the way
// Node pools small Buffers. A slab is sized for SLAB_PAYLOADS payloads like
// the one that opened it, within MIN_SLAB and MAX_SLAB. A payload is only
// cut from a slab of at most 2 * SLAB_PAYLOADS times its own size (or
// MIN_SLAB, if larger), so a payload kept alive keeps at most that much
// memory reachable. Each part of a slab is handed out once and never
// reused, so no two Buffers ever share bytes.
//
// Slabs stay small because the C library serves large blocks from fresh
// pages (mmap, or heap growth that it trims again when they are freed), and
// every fresh page costs a page fault on first write. With slabs of 32
// payloads of 64 KiB (2 MiB), shift() spent more time in page faults than
// in copying.

import { Buffer } from 'node:buffer';

const SLAB_PAYLOADS = 32;
/** The smallest slab, the size of Node's own pool. */
const MIN_SLAB = 8 * 1024;
/** The largest slab; half of glibc's initial mmap threshold. */
const MAX_SLAB = 64 * 1024;

let slab: ArrayBuffer | undefined;
let offset = 0;

/** Returns an uninitialized plain Buffer of `size` bytes that the caller fills. */
export function outputBuffer(size: number): Buffer {
  // A payload that fills more than half a slab gets an ArrayBuffer of its own.
  if (size === 0 || size * 2 > MAX_SLAB) return Buffer.allocUnsafe(size);

  let current = slab;
  const fits = current !== undefined && current.byteLength - offset >= size;
  if (!fits || (current as ArrayBuffer).byteLength > Math.max(size * SLAB_PAYLOADS * 2, MIN_SLAB)) {
    const slabSize = Math.min(Math.max(size * SLAB_PAYLOADS, MIN_SLAB), MAX_SLAB);
    current = Buffer.allocUnsafeSlow(slabSize).buffer as ArrayBuffer;
    slab = current;
    offset = 0;
  }
  const buffer = Buffer.from(current as ArrayBuffer, offset, size);
  // Keep the next part 8-byte aligned, as Node does for its pool.
  offset += (size + 7) & ~7;
  return buffer;
}
