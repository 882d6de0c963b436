// Compares one allocate + release of this package with Buffer.allocUnsafe
// plus the same accounting done in JavaScript (a Map of per-client counters
// and a limit check), interleaved in rounds, and prints the median ns per
// operation of each. Run after `npm run build`: node bench/alloc-release.js
'use strict';
const { GlobalSessionManager } = require('..');

const SIZES = [64, 1024, 16 * 1024, 64 * 1024];
const ROUNDS = Number(process.env.ROUNDS ?? 7);
const OPERATIONS = Number(process.env.OPERATIONS ?? 20000);

const threads = GlobalSessionManager.instance().getThreadManager();
threads.registerSession('bench-client', { memoryLimit: 0 });

function ours(size) {
  for (let i = 0; i < OPERATIONS; i++) {
    const buffer = threads.allocate('bench-client', size);
    buffer[0] = 1;
    threads.release(buffer);
  }
}

const usage = new Map([['bench-client', 0]]);
const LIMIT = 1 << 30;
function baseline(size) {
  for (let i = 0; i < OPERATIONS; i++) {
    const current = usage.get('bench-client');
    if (current + size > LIMIT) throw new Error('limit');
    const buffer = Buffer.allocUnsafe(size);
    buffer[0] = 1;
    usage.set('bench-client', current + size);
    usage.set('bench-client', usage.get('bench-client') - size);
  }
}

function timeNs(run, size) {
  const start = process.hrtime.bigint();
  run(size);
  return Number(process.hrtime.bigint() - start) / OPERATIONS;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const backend = GlobalSessionManager.instance().getBackendInfo().name;
console.log(`node ${process.version}, backend ${backend}, ${ROUNDS} rounds of ${OPERATIONS} operations`);
for (const size of SIZES) {
  ours(size);
  baseline(size);
  const oursNs = [];
  const baselineNs = [];
  for (let round = 0; round < ROUNDS; round++) {
    oursNs.push(timeNs(ours, size));
    baselineNs.push(timeNs(baseline, size));
  }
  const ratio = median(oursNs) / median(baselineNs);
  console.log(
    `${String(size).padStart(6)} B  ours ${median(oursNs).toFixed(0)} ns  ` +
      `baseline ${median(baselineNs).toFixed(0)} ns  ratio ${ratio.toFixed(2)}  ` +
      `(ours ${Math.min(...oursNs).toFixed(0)}-${Math.max(...oursNs).toFixed(0)})`,
  );
}
