// overhead: memory per live buffer beyond its usable size. A fresh process
// allocates N 1 KiB buffers, fills them (so every page is resident) and keeps
// them all alive. The growth of RSS, of process.memoryUsage().external and
// arrayBuffers, and of the V8 heap, minus N x the usable size (the charge the
// allocator reports per buffer), divided by N, is the overhead per buffer:
// the Buffer object, the backing-store record, the release record of the
// addon and the block's share of the allocator's own bookkeeping. The RSS
// figure is split into the V8 heap's resident pages and the rest (native).
// Two references are measured the same way. The floor is the addon's
// externalBufferFloor(size, true): an external Buffer over a malloc'd block
// with no accounting, which is what Node itself spends on any external
// Buffer. Buffer.allocUnsafeSlow has one unpooled backing store per Buffer.
// Ours less the floor is what this package adds per buffer.
// Needs --expose-gc.
'use strict';
const v8 = require('node:v8');
const common = require('./common');

const SIZE = 1024;
const CLIENT = 'bench-overhead';

function settle() {
  for (let i = 0; i < 3; i++) global.gc();
}

async function measure({ quick, args }) {
  if (typeof global.gc !== 'function') throw new Error('global.gc is missing: run with node --expose-gc');
  const variant = args.find((a) => a === 'ours' || a === 'floor' || a === 'allocUnsafeSlow') ?? 'ours';
  const count = quick ? 50_000 : 100_000;
  let allocate;
  let usage = () => 0;
  let backend;
  if (variant === 'ours') {
    const { GlobalSessionManager } = common.loadPackage();
    const manager = GlobalSessionManager.instance();
    const threads = manager.getThreadManager();
    threads.registerSession(CLIENT, { memoryLimit: 0 });
    // Warm the path once so code and first spans are not counted.
    threads.release(threads.allocate(CLIENT, SIZE));
    allocate = () => threads.allocate(CLIENT, SIZE);
    usage = () => manager.getGlobalMemoryUsage();
    backend = manager.getBackendInfo().name;
  } else if (variant === 'floor') {
    const floor = common.externalBufferFloor();
    if (floor === undefined) throw new Error('the addon has no externalBufferFloor export');
    allocate = () => floor(SIZE, true);
  } else {
    allocate = () => Buffer.allocUnsafeSlow(SIZE);
  }

  const held = new Array(count);
  settle();
  const before = { ...process.memoryUsage(), heapPhysical: v8.getHeapStatistics().total_physical_size };
  const usageBefore = usage();
  for (let i = 0; i < count; i++) {
    const buffer = allocate();
    buffer.fill(1);
    held[i] = buffer;
  }
  settle();
  const after = { ...process.memoryUsage(), heapPhysical: v8.getHeapStatistics().total_physical_size };
  // Usable bytes per buffer: the allocator's charge for ours, the requested
  // size for the references (their malloc rounding is part of their overhead).
  const usable = variant === 'ours' ? (usage() - usageBefore) / count : SIZE;
  const perBuffer = (key, subtractUsable) =>
    (after[key] - before[key] - (subtractUsable ? count * usable : 0)) / count;
  const result = {
    variant,
    backend,
    count,
    usable,
    rss: perBuffer('rss', true),
    external: perBuffer('external', true),
    arrayBuffers: perBuffer('arrayBuffers', true),
    heapUsed: perBuffer('heapUsed', false),
    // Resident pages of the V8 heap, used or not: RSS minus this minus the
    // usable bytes is what lives outside the JavaScript heap.
    heapPhysical: perBuffer('heapPhysical', false),
  };
  result.native = result.rss - result.heapPhysical;
  if (held.length !== count) throw new Error(`expected ${count} live buffers, found ${held.length}`);
  return result;
}

/** Measures ours per backend and the reference, each in fresh processes. */
async function run({ quick }) {
  const repeats = quick ? 1 : 3;
  const jobs = [
    ...common.BACKENDS.map((backend) => ({ key: `ours-${backend}`, backend, variant: 'ours' })),
    { key: 'floor', backend: 'system', variant: 'floor' },
    { key: 'allocUnsafeSlow', backend: 'system', variant: 'allocUnsafeSlow' },
  ];
  const samples = Object.fromEntries(jobs.map((job) => [job.key, []]));
  for (let r = 0; r < repeats; r++) {
    for (const job of jobs) {
      samples[job.key].push(
        await common.runChild(__filename, {
          backend: job.backend,
          args: [job.variant, ...(quick ? ['--quick'] : [])],
          execArgv: ['--expose-gc'],
        }),
      );
    }
  }
  const out = {};
  for (const [key, list] of Object.entries(samples)) {
    const median = (field) => common.summarize(list.map((s) => s[field])).median;
    out[key] = {
      variant: list[0].variant,
      backend: list[0].backend,
      count: list[0].count,
      usable: list[0].usable,
      repeats: list.length,
      rss: common.summarize(list.map((s) => s.rss)),
      external: median('external'),
      arrayBuffers: median('arrayBuffers'),
      heapUsed: median('heapUsed'),
      heapPhysical: median('heapPhysical'),
      native: median('native'),
    };
  }
  return out;
}

module.exports = { run };
if (require.main === module) common.childMain(measure);
