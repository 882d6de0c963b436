'use strict';
// A small workload of the compiled package for scripts/test-valgrind-node.sh.
// Under memcheck it exercises every path that allocates or frees native
// memory: allocations from each session component and the message cache,
// explicit release, buffers freed by garbage collection, session queues,
// limit refusals, unregister and expiry cleanup, and a worker thread that
// exits with live buffers. It also checks the accounting as it goes and
// exits non-zero on any mismatch, so a run that leaks nothing but miscounts
// still fails.
//
// It ends naturally (no process.exit()), so that the environment teardown
// frees the buffers still live on the main thread, as it does in a broker
// that shuts down cleanly.
//
//   node --expose-gc test/valgrind/workload.js [package root]

const assert = require('node:assert/strict');
const path = require('node:path');
const { Worker } = require('node:worker_threads');

const root = process.argv[2] ?? path.join(__dirname, '..', '..');
const { GlobalSessionManager, MqttAllocatorError } = require(root);

const gc = globalThis.gc;
if (typeof gc !== 'function') {
  console.error('workload: run with node --expose-gc');
  process.exitCode = 2;
  return;
}

const manager = GlobalSessionManager.instance();
const sessions = manager.getThreadManager();

/** Lets finalizers of collected Buffers run (Node runs them on a later turn). */
async function collect() {
  for (let i = 0; i < 3; i++) {
    gc();
    for (let turn = 0; turn < 3; turn++) {
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  }
}

/** Sum of the usable sizes the hierarchy reports for a node's own blocks and
 * its children's; it must equal the node's usage at every level. */
function checkTree(node) {
  const below = node.children.reduce((sum, child) => sum + checkTree(child), 0);
  assert.equal(node.usage, node.selfUsage + below, `usage of ${node.id}`);
  return node.usage;
}

function refused(action) {
  try {
    action();
  } catch (error) {
    assert.ok(error instanceof MqttAllocatorError, String(error));
    return error.code;
  }
  assert.fail('expected the call to be refused');
}

const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const { GlobalSessionManager } = require(workerData.root);
const sessions = GlobalSessionManager.instance().getThreadManager();
sessions.registerSession('vg-worker', { memoryLimit: 64 * 1024, expiryInterval: 3600 });
globalThis.kept = [];
for (const component of ['session', 'queue', 'worker']) {
  for (let i = 0; i < 5; i++) globalThis.kept.push(sessions.allocate('vg-worker', 700 + i, component));
}
globalThis.kept.push(sessions.allocateCache(300));
globalThis.kept.push(sessions.allocate('vg-worker', 0));
sessions.release(sessions.allocate('vg-worker', 100));
const queue = sessions.createSessionQueue('vg-worker', { overflow: 'drop-oldest', maxMessages: 3 });
for (let i = 0; i < 5; i++) queue.push(Buffer.alloc(200, i));
globalThis.queue = queue;
parentPort.postMessage(sessions.getMemoryStatistics());
// Ends with 17 buffers live (15 + cache + empty) and 3 queued payloads, which
// are native blocks, not buffers: the thread's teardown frees all of them.
`;

async function main() {
  const baseline = manager.getGlobalMemoryUsage();
  const baselineStats = sessions.getMemoryStatistics();

  // Allocations from every component, the cache, and size 0.
  sessions.registerSession('vg-a', { memoryLimit: 0, expiryInterval: 0 });
  sessions.registerSession('vg-b', { memoryLimit: 16 * 1024, expiryInterval: 0 });
  const kept = [];
  for (const component of ['session', 'queue', 'worker']) {
    for (let i = 0; i < 10; i++) {
      kept.push(sessions.allocate('vg-a', 100 * (i + 1), component));
      kept.push(sessions.allocate('vg-b', 50 + i, component));
    }
  }
  for (let i = 0; i < 5; i++) kept.push(sessions.allocateCache(1000 + i));
  kept.push(sessions.allocate('vg-a', 0));
  kept.push(sessions.allocate('vg-b', 0, 'queue'));
  for (const buffer of kept) buffer.fill(0xa5);
  checkTree(manager.getAllocatorHierarchy());

  // A limit refusal leaves nothing charged.
  const before = sessions.getSessionMemoryUsage('vg-b');
  assert.equal(refused(() => sessions.allocate('vg-b', 64 * 1024)), 'MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED');
  assert.equal(sessions.tryAllocate('vg-b', 64 * 1024, 'queue'), undefined);
  assert.equal(sessions.getSessionMemoryUsage('vg-b'), before);

  // Explicit release of half, including views on released memory.
  const view = kept[0].subarray(10, 20);
  for (let i = 0; i < kept.length; i += 2) sessions.release(kept[i]);
  assert.equal(view.length, 0);
  assert.equal(refused(() => sessions.release(kept[0])), 'MQ_ERR_INVALID_ARGS');

  // Buffers dropped for the garbage collector.
  for (let i = 0; i < 200; i++) sessions.allocate('vg-a', 64 + (i % 7), i % 2 === 0 ? 'queue' : 'worker');
  for (let i = 0; i < 20; i++) sessions.allocateCache(128);
  await collect();
  checkTree(manager.getAllocatorHierarchy());

  // A session queue: push, shift, overflow by dropping, clear.
  const queue = sessions.createSessionQueue('vg-b', { overflow: 'drop-oldest', maxMessages: 4 });
  let dropped = 0;
  queue.on('drop', () => {
    dropped += 1;
  });
  for (let i = 0; i < 10; i++) assert.ok(queue.push(Buffer.alloc(300, i)));
  assert.equal(dropped, 6);
  assert.equal(queue.shift()[0], 6);
  queue.clear();

  // Lowering a limit below usage refuses without freeing; removing it allows again.
  manager.setClientMemoryLimit('vg-a', 1);
  assert.equal(sessions.tryAllocate('vg-a', 10), undefined);
  manager.setClientMemoryLimit('vg-a', 0);
  kept.push(sessions.allocate('vg-a', 10)); // index 67: released with the odd ones below

  // Unregister with expiry 0: the allocators go at once, and the buffers
  // still alive stay valid and charged to the thread until released.
  sessions.unregisterSession('vg-a');
  sessions.unregisterSession('vg-b');
  assert.equal(sessions.hasSession('vg-a'), false);
  assert.equal(sessions.hasSession('vg-b'), false);
  assert.equal(manager.cleanupExpiredAllocators(), 0);
  for (let i = 1; i < kept.length; i += 2) sessions.release(kept[i]);
  kept.length = 0;
  // With no buffer of a removed session left, every node's usage is again
  // exactly its own blocks plus its children's.
  checkTree(manager.getAllocatorHierarchy());

  // A session removed by cleanup, once its expiry interval has passed,
  // while some of its buffers wait for GC.
  sessions.registerSession('vg-c', { expiryInterval: 1 });
  for (let i = 0; i < 30; i++) sessions.allocate('vg-c', 256, 'queue');
  sessions.unregisterSession('vg-c');
  assert.equal(manager.cleanupExpiredAllocators(), 0);
  await new Promise((resolve) => setTimeout(resolve, 1100));
  assert.equal(manager.cleanupExpiredAllocators(), 1);
  await collect();

  assert.equal(manager.getGlobalMemoryUsage(), baseline, 'global usage back to the baseline');
  assert.deepEqual(sessions.getMemoryStatistics(), baselineStats, 'thread statistics back to the baseline');

  // A worker that allocates and exits with live buffers and a live session.
  // The exit listener goes on first: a worker that exits right after posting
  // emits 'message' and 'exit' in one callback.
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { root } });
  const exit = new Promise((resolve, reject) => {
    worker.once('exit', resolve);
    worker.once('error', reject);
  });
  const stats = await new Promise((resolve) => worker.once('message', resolve));
  assert.ok(stats.totalUsage > 0 && stats.liveBuffers === 17 && stats.queueUsage >= 3 * 200, JSON.stringify(stats));
  const code = await exit;
  assert.equal(code, 0);
  assert.equal(manager.getGlobalMemoryUsage(), baseline, 'the worker teardown freed its buffers');
  assert.equal(manager.getClientMemoryUsage().has('vg-worker'), false);
  checkTree(manager.getAllocatorHierarchy());

  // The main thread ends with a live session and live buffers, freed by its
  // own teardown.
  sessions.registerSession('vg-end', { expiryInterval: 3600 });
  globalThis.keptAtExit = [sessions.allocate('vg-end', 4000), sessions.allocateCache(500), sessions.allocate('vg-end', 0, 'worker')];
  const endQueue = sessions.createSessionQueue('vg-end', { overflow: 'reject' });
  endQueue.push('kept until exit');
  globalThis.endQueue = endQueue;
  console.log('workload: done');
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
