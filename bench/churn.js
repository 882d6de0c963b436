// churn: 1,000 clients come and go for many rounds while every byte is
// checked. A round registers every client (expiry 0) and allocates a few
// buffers in each of its session, queue and worker allocators. It releases a
// third of them and drops a third for the garbage collector. The rest stay
// alive through unregisterSession() and cleanupExpiredAllocators(), and are
// then let go too. The charge of each allocation is the change of the
// allocator usage it caused. After each phase the global usage and every
// client's usage must equal the sum of the charges of the buffers still
// alive, and at the end of every round everything must be back at the
// starting figures.
// Any difference is drift: it is reported and the process exits with 1.
// RSS is sampled along the way. Needs --expose-gc (run.js passes it).
'use strict';
const common = require('./common');

const CLIENTS = 1000;
const COMPONENTS = ['session', 'queue', 'worker'];
const SIZES = [1, 24, 200, 1024, 3000, 16 * 1024];
const PER_COMPONENT = 2;
const SETTLE_TRIES = 50;

/** A small seeded generator, so every run does the same work. */
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function measure({ quick }) {
  if (typeof global.gc !== 'function') throw new Error('global.gc is missing: run with node --expose-gc');
  const { GlobalSessionManager } = common.loadPackage();
  const manager = GlobalSessionManager.instance();
  const threads = manager.getThreadManager();
  const random = mulberry32(12345);
  const rounds = quick ? 10 : 60;
  const ids = Array.from({ length: CLIENTS }, (_, i) => `bench-churn-${i}`);

  const baseUsage = manager.getGlobalMemoryUsage();
  const baseLive = threads.getMemoryStatistics().liveBuffers;
  const drift = { checks: 0, mismatches: 0, maxAbs: 0, first: undefined };
  const rss = [];

  function check(label, round, actual, expected) {
    drift.checks += 1;
    if (actual === expected) return;
    drift.mismatches += 1;
    drift.maxAbs = Math.max(drift.maxAbs, Math.abs(actual - expected));
    drift.first ??= { round, label, actual, expected };
  }

  // Collects garbage until the live-buffer count reaches `expectedLive`, so
  // finalizers of dropped buffers have run before usage is compared.
  async function settle(expectedLive) {
    for (let i = 0; i < SETTLE_TRIES; i++) {
      global.gc();
      await common.yieldToLoop();
      if (threads.getMemoryStatistics().liveBuffers === baseLive + expectedLive) return true;
    }
    return false;
  }

  function sample(round) {
    global.gc();
    const m = process.memoryUsage();
    rss.push({ round, rss: m.rss, external: m.external, heapUsed: m.heapUsed, usage: manager.getGlobalMemoryUsage() });
  }

  // Buffers are touched only in these synchronous helpers: a suspended async
  // function can keep stale values of its locals alive, which would hold a
  // dropped buffer back from the collector and look like drift.

  /** Allocates this round's buffers, releases a third, drops a third and
   * returns the rest as { id, buffer, charge } entries. */
  function allocateAndThin(round) {
    const live = [];
    for (const id of ids) {
      threads.registerSession(id, { memoryLimit: 0, expiryInterval: 0 });
      for (const component of COMPONENTS) {
        for (let k = 0; k < PER_COMPONENT; k++) {
          const size = SIZES[Math.floor(random() * SIZES.length)];
          const before = manager.getGlobalMemoryUsage();
          const clientBefore = threads.getSessionMemoryUsage(id);
          const buffer = threads.allocate(id, size, component);
          buffer[0] = 1;
          const charge = manager.getGlobalMemoryUsage() - before;
          check('client charge', round, threads.getSessionMemoryUsage(id) - clientBefore, charge);
          live.push({ id, buffer, charge });
        }
      }
    }
    const kept = [];
    for (const entry of live) {
      const fate = random();
      if (fate < 1 / 3) threads.release(entry.buffer);
      else if (fate >= 2 / 3) kept.push(entry);
    }
    return kept;
  }

  /** Sums the charges of the kept buffers, per client and in total. */
  function expectedCharges(kept) {
    const expectedByClient = new Map(ids.map((id) => [id, 0]));
    let expectedTotal = 0;
    for (const { id, charge } of kept) {
      expectedByClient.set(id, expectedByClient.get(id) + charge);
      expectedTotal += charge;
    }
    return { expectedByClient, expectedTotal };
  }

  /** Releases every other kept buffer and drops the rest. */
  function letGo(kept) {
    for (let i = 0; i < kept.length; i += 2) threads.release(kept[i].buffer);
    kept.length = 0;
  }

  sample(0);
  let unsettled = 0;
  for (let round = 1; round <= rounds; round++) {
    const kept = allocateAndThin(round);
    if (!(await settle(kept.length))) unsettled += 1;

    const { expectedByClient, expectedTotal } = expectedCharges(kept);
    check('global while connected', round, manager.getGlobalMemoryUsage() - baseUsage, expectedTotal);
    const usages = manager.getClientMemoryUsage();
    for (const id of ids) check('client while connected', round, usages.get(id) ?? -1, expectedByClient.get(id));

    // End every session. The kept buffers stay valid and charged.
    for (const id of ids) threads.unregisterSession(id);
    manager.cleanupExpiredAllocators();
    const left = manager.getClientMemoryUsage();
    check('sessions left after cleanup', round, ids.filter((id) => left.has(id)).length, 0);
    check('global after cleanup', round, manager.getGlobalMemoryUsage() - baseUsage, expectedTotal);

    letGo(kept);
    if (!(await settle(0))) unsettled += 1;
    check('global at round end', round, manager.getGlobalMemoryUsage(), baseUsage);
    check('live buffers at round end', round, threads.getMemoryStatistics().liveBuffers, baseLive);

    if (round === 1 || round % Math.max(1, Math.floor(rounds / 6)) === 0 || round === rounds) sample(round);
  }

  const finalDrift = manager.getGlobalMemoryUsage() - baseUsage;
  check('final global', rounds, finalDrift, 0);
  if (drift.mismatches !== 0 || unsettled !== 0) process.exitCode = 1;
  return {
    backend: manager.getBackendInfo().name,
    clients: CLIENTS,
    rounds,
    buffersPerRound: CLIENTS * COMPONENTS.length * PER_COMPONENT,
    finalDrift,
    drift,
    unsettled,
    rss,
  };
}

/** Runs the workload on every backend, each in its own process. */
async function run({ quick }) {
  const byBackend = {};
  for (const backend of common.BACKENDS) {
    try {
      byBackend[backend] = await common.runChild(__filename, {
        backend,
        args: quick ? ['--quick'] : [],
        execArgv: ['--expose-gc'],
      });
    } catch (error) {
      // A child that found drift exits with 1 after reporting, so keep its report.
      if (error.result === undefined) throw error;
      byBackend[backend] = error.result;
    }
  }
  return byBackend;
}

module.exports = { run };
if (require.main === module) common.childMain(measure);
