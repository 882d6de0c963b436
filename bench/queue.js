// queue: SessionQueue push(payload) + shift() against the plain JavaScript
// way of queueing a payload for a client. The baseline copies the payload
// into a new Buffer (Buffer.allocUnsafe + copy), keeps it in an array (push /
// shift) and counts its bytes in a Map. The shifted copy is a plain Buffer,
// so nothing is released by hand.
// Run directly (`node bench/queue.js [--quick]`), it measures the backend
// chosen by MQTT_ALLOCATOR_BACKEND and prints JSON. bench/run.js runs it once
// per backend.
'use strict';
const common = require('./common');

const CLIENT = 'bench-queue';
const LIMIT = 2 ** 40;

async function measure({ quick }) {
  const { GlobalSessionManager } = common.loadPackage();
  const manager = GlobalSessionManager.instance();
  const threads = manager.getThreadManager();
  threads.registerSession(CLIENT, { memoryLimit: 0 });
  const queue = threads.createSessionQueue(CLIENT, { overflow: 'reject' });

  const held = [];
  const counters = new Map([[CLIENT, 0]]);
  const rounds = quick ? 5 : 31;
  const count = quick ? 8_000 : 20_000;
  const results = [];

  for (const size of common.SIZES) {
    const payload = Buffer.alloc(size, 7);
    const variants = {
      ours() {
        if (!queue.push(payload)) throw new Error(`push of ${size} bytes rejected by the queue`);
        const out = queue.shift();
        out[0] = 1;
      },
      baseline() {
        const current = counters.get(CLIENT);
        if (current + size > LIMIT) throw new Error('limit');
        const copy = Buffer.allocUnsafe(size);
        payload.copy(copy);
        held.push(copy);
        counters.set(CLIENT, current + size);
        const out = held.shift();
        counters.set(CLIENT, counters.get(CLIENT) - out.length);
        out[0] = 1;
      },
    };
    const samples = await common.interleave(variants, { rounds, count });
    results.push({
      size,
      ours: common.summarize(samples.ours),
      baseline: common.summarize(samples.baseline),
      ratio: common.pairedRatios(samples.ours, samples.baseline),
    });
  }

  if (queue.length !== 0 || manager.getGlobalMemoryUsage() !== 0) {
    throw new Error(`queue not empty after the benchmark: ${queue.length} payloads, global usage ${manager.getGlobalMemoryUsage()} bytes`);
  }
  return { backend: manager.getBackendInfo(), rounds, count, results };
}

/** Measures every backend, each in its own process. */
async function run(options) {
  return common.runPerBackend(__filename, options);
}

module.exports = { run };
if (require.main === module) common.childMain(measure);
