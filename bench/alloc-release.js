// allocate + release: one threads.allocate() and threads.release() of this
// package (one byte touched) against
// - baseline: Buffer.allocUnsafe plus the same accounting done in JavaScript
//   (a Map of per-client counters and a limit check, incremented and then
//   decremented);
// - floor: the addon's benchmark-only externalBufferFloor(size), one external
//   Buffer over a malloc'd block, detached at once, with no accounting. It is
//   the least any external-Buffer design can cost, so ours / floor is the
//   price of the accounting itself.
// Run directly (`node bench/alloc-release.js [--quick]`), it measures the
// backend chosen by MQTT_ALLOCATOR_BACKEND and prints JSON. bench/run.js runs
// it once per backend.
'use strict';
const common = require('./common');

const CLIENT = 'bench-alloc-release';
const LIMIT = 2 ** 40;

async function measure({ quick }) {
  const { GlobalSessionManager } = common.loadPackage();
  const manager = GlobalSessionManager.instance();
  const threads = manager.getThreadManager();
  threads.registerSession(CLIENT, { memoryLimit: 0 });
  const floor = common.externalBufferFloor();

  const usage = new Map([[CLIENT, 0]]);
  const rounds = quick ? 5 : 31;
  const count = quick ? 20_000 : 25_000;
  const results = [];

  for (const size of common.SIZES) {
    const variants = {
      ours() {
        const buffer = threads.allocate(CLIENT, size);
        buffer[0] = 1;
        threads.release(buffer);
      },
      baseline() {
        const current = usage.get(CLIENT);
        if (current + size > LIMIT) throw new Error('limit');
        const buffer = Buffer.allocUnsafe(size);
        buffer[0] = 1;
        usage.set(CLIENT, current + size);
        usage.set(CLIENT, usage.get(CLIENT) - size);
      },
    };
    if (floor !== undefined) variants.floor = () => floor(size);

    const samples = await common.interleave(variants, { rounds, count });
    results.push({
      size,
      ours: common.summarize(samples.ours),
      baseline: common.summarize(samples.baseline),
      floor: floor === undefined ? undefined : common.summarize(samples.floor),
      ratio: common.pairedRatios(samples.ours, samples.baseline),
      floorRatio: floor === undefined ? undefined : common.pairedRatios(samples.ours, samples.floor),
    });
  }

  if (manager.getGlobalMemoryUsage() !== 0) {
    throw new Error(`global usage after the benchmark is ${manager.getGlobalMemoryUsage()} bytes, expected 0`);
  }
  return { backend: manager.getBackendInfo(), rounds, count, hasFloor: floor !== undefined, results };
}

/** Measures every backend, each in its own process. */
async function run(options) {
  return common.runPerBackend(__filename, options);
}

module.exports = { run };
if (require.main === module) common.childMain(measure);
