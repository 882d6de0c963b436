// workers: allocate + release throughput (1 KiB, one byte touched) with 1
// and with 2 worker_threads, each working for clients of its own. Every
// worker does the same number of operations after a common start signal.
// The figure is all operations divided by the time from the earliest start
// to the latest end, in operations per second. Configurations alternate
// round by round. With 2 cores, 2 workers can at best double the figure.
// Buffer.allocUnsafeSlow, measured the same way, shows how far the machine
// itself lets one-buffer-per-operation work scale.
'use strict';
const { Worker, isMainThread, parentPort, workerData, threadId } = require('node:worker_threads');
const common = require('./common');

const SIZE = 1024;

async function workerMain() {
  let operation;
  if (workerData.variant === 'ours') {
    const { GlobalSessionManager } = common.loadPackage();
    const threads = GlobalSessionManager.instance().getThreadManager();
    const client = `bench-worker-${threadId}`;
    threads.registerSession(client, { memoryLimit: 0 });
    operation = () => {
      const buffer = threads.allocate(client, SIZE);
      buffer[0] = 1;
      threads.release(buffer);
    };
  } else {
    operation = () => {
      const buffer = Buffer.allocUnsafeSlow(SIZE);
      buffer[0] = 1;
    };
  }
  await common.timeBatched(operation, 2000); // warm-up
  parentPort.postMessage({ type: 'ready' });
  parentPort.once('message', async () => {
    const start = process.hrtime.bigint();
    await common.timeBatched(operation, workerData.count);
    const end = process.hrtime.bigint();
    parentPort.postMessage({ type: 'done', start: String(start), end: String(end) });
  });
}

/** Runs one round with `n` fresh workers and returns total operations per second. */
async function round(variant, n, count) {
  const workers = Array.from({ length: n }, () => new Worker(__filename, { workerData: { variant, count } }));
  const next = (worker, type) =>
    new Promise((resolve, reject) => {
      const onMessage = (message) => {
        if (message.type !== type) return;
        worker.off('message', onMessage);
        resolve(message);
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
    });
  await Promise.all(workers.map((w) => next(w, 'ready')));
  const done = workers.map((w) => next(w, 'done'));
  for (const w of workers) w.postMessage('go');
  const reports = await Promise.all(done);
  await Promise.all(workers.map((w) => w.terminate()));
  const start = reports.reduce((min, r) => (BigInt(r.start) < min ? BigInt(r.start) : min), BigInt(reports[0].start));
  const end = reports.reduce((max, r) => (BigInt(r.end) > max ? BigInt(r.end) : max), 0n);
  return (n * count) / (Number(end - start) / 1e9);
}

async function measure({ quick }) {
  const { GlobalSessionManager } = common.loadPackage();
  const manager = GlobalSessionManager.instance();
  const rounds = quick ? 3 : 9;
  const count = quick ? 30_000 : 150_000;
  const configs = [['ours', 1], ['ours', 2], ['allocUnsafeSlow', 1], ['allocUnsafeSlow', 2]];
  const samples = Object.fromEntries(configs.map((c) => [c.join('-'), []]));
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < configs.length; k++) {
      const [variant, n] = configs[(r + k) % configs.length];
      samples[`${variant}-${n}`].push(await round(variant, n, count));
    }
  }
  return {
    backend: manager.getBackendInfo().name,
    size: SIZE,
    rounds,
    countPerWorker: count,
    one: common.summarize(samples['ours-1']),
    two: common.summarize(samples['ours-2']),
    referenceOne: common.summarize(samples['allocUnsafeSlow-1']),
    referenceTwo: common.summarize(samples['allocUnsafeSlow-2']),
  };
}

/** Measures every backend, each in its own process. */
async function run({ quick }) {
  const byBackend = {};
  for (const backend of common.BACKENDS) {
    byBackend[backend] = await common.runChild(__filename, { backend, args: quick ? ['--quick'] : [] });
  }
  return byBackend;
}

module.exports = { run };
if (!isMainThread) workerMain();
else if (require.main === module) common.childMain(measure);
