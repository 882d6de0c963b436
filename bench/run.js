// Runs every benchmark case and writes BENCHMARKS.md and
// bench/results/latest.json. Usage, after `npm run build`:
//   node bench/run.js [--quick]
// --quick runs fewer rounds and operations (about a minute and a half);
// the full run takes about three minutes. Targets are reported as met or not
// met and never fail the run. Accounting drift in the churn workload does:
// main() then sets exit code 1.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const common = require('./common');
const { fmt, formatSize, table } = common;

const CASES = {
  'alloc-release': require('./alloc-release'),
  queue: require('./queue'),
  'broker-throughput': require('./broker-throughput'),
  churn: require('./churn'),
  workers: require('./workers'),
  overhead: require('./overhead'),
};

const RESULTS_FILE = path.join(__dirname, 'results', 'latest.json');
const REPORT_FILE = path.join(common.REPO, 'BENCHMARKS.md');

/** "median (min–max)" */
function spread(summary, digits = 0) {
  return `${fmt(summary.median, digits)} (${fmt(summary.min, digits)}–${fmt(summary.max, digits)})`;
}

/** Builds the "cases" array of latest.json. */
function caseRows(results) {
  const rows = [];
  for (const [backend, r] of Object.entries(results['alloc-release'])) {
    for (const x of r.results) {
      const floor = x.floor?.median;
      rows.push({
        name: 'alloc-release', size: x.size, backend,
        ours_ns: x.ours.median, baseline_ns: x.baseline.median, floor_ns: floor,
        ratio: x.ratio.median, floor_ratio: x.floorRatio?.median,
        ours_spread: x.ours, baseline_spread: x.baseline, floor_spread: x.floor,
        ratio_spread: x.ratio, floor_ratio_spread: x.floorRatio,
      });
    }
  }
  for (const [backend, r] of Object.entries(results.queue)) {
    for (const x of r.results) {
      rows.push({
        name: 'queue', size: x.size, backend,
        ours_ns: x.ours.median, baseline_ns: x.baseline.median,
        ratio: x.ratio.median,
        ours_spread: x.ours, baseline_spread: x.baseline, ratio_spread: x.ratio,
      });
    }
  }
  const b = results['broker-throughput'];
  rows.push({
    name: 'broker-throughput', size: 1024, backend: b.backend, unit: 'messages/s',
    ours: b.bounded.median, baseline: b.stock.median, ratio: b.ratio.median, ratio_spread: b.ratio,
    cpu_ratio: b.cpuRatio.median, cpu_ratio_spread: b.cpuRatio,
    ours_spread: b.bounded, baseline_spread: b.stock,
    // The reference broker: stock Aedes storing a Buffer copy per subscriber.
    copying_ratio: b.copyingRatio.median, copying_ratio_spread: b.copyingRatio,
  });
  return rows;
}

function targets(results, rows) {
  const tc = (name, size) => rows.find((r) => r.name === name && r.size === size && r.backend === 'tcmalloc');
  const list = [];
  for (const size of common.SIZES) {
    const r = tc('alloc-release', size);
    list.push({ target: `alloc-release ours/floor ≤ 1.2 at ${formatSize(size)}`, value: r.floor_ratio, met: r.floor_ratio === undefined ? undefined : r.floor_ratio <= 1.2 });
  }
  for (const size of [16 * 1024, 64 * 1024]) {
    const r = tc('alloc-release', size);
    list.push({ target: `alloc-release ours/baseline ≤ 1.2 at ${formatSize(size)}`, value: r.ratio, met: r.ratio <= 1.2 });
  }
  for (const [size, bound] of [[1024, 1.5], [16 * 1024, 1.0], [64 * 1024, 1.0]]) {
    const r = tc('queue', size);
    list.push({ target: `queue ours/baseline ≤ ${bound.toFixed(1)} at ${formatSize(size)}`, value: r.ratio, met: r.ratio <= bound });
  }
  const broker = rows.find((r) => r.name === 'broker-throughput');
  list.push({ target: 'broker-throughput bounded/stock ≥ 0.9', value: broker.ratio, met: broker.ratio >= 0.9 });
  for (const [backend, c] of Object.entries(results.churn)) {
    list.push({ target: `churn drift = 0 (${backend})`, value: c.drift.maxAbs, met: driftFree(c) });
  }
  const added = packageOverhead(results.overhead);
  list.push({
    target: 'memory this package adds per live 1 KiB buffer < 128 B (RSS, tcmalloc, ours - floor)',
    value: added,
    met: added < 128,
  });
  return list;
}

// RSS per live buffer beyond its usable size that this package adds to what
// Node spends on any external Buffer: ours (tcmalloc) less the floor.
function packageOverhead(overhead) {
  return overhead['ours-tcmalloc'].rss.median - overhead.floor.rss.median;
}

function targetStatus(t) {
  if (t.met === undefined) return 'not measured';
  return t.met ? 'met' : 'not met';
}

function driftFree(c) {
  return c.drift.mismatches === 0 && c.finalDrift === 0 && c.unsettled === 0;
}

function report(meta, results, rows, targetList) {
  const out = [];
  const tcVersion = meta.tcmalloc ?? 'not loaded';
  out.push('# Benchmarks', '');
  out.push(
    `Written by \`node bench/run.js${meta.quick ? ' --quick' : ''}\` on ${meta.date}` +
      (meta.quick ? ' (quick mode: fewer rounds and operations, so wider spreads).' : '.'),
    '',
    `Machine: ${meta.machine.nproc} CPUs (\`nproc\`), ${meta.machine.cpu}, ${meta.machine.memoryGiB} GiB, ` +
      `${meta.machine.os}; Node ${meta.machine.node}; tcmalloc: ${tcVersion}.`,
    '',
    'Figures are medians over interleaved rounds with the spread (min–max) in brackets, and',
    'bench/results/latest.json has the quartiles too. The operation benchmarks count the CPU time',
    "of the whole process (all threads, the garbage collector's included), because the wall time",
    'of a shared machine also counts the waits for a core. Ratios of ours to a reference are the',
    'median of the per-round ratios. Both runs of a round are seconds apart, so a burst of load',
    'from elsewhere on the machine slows both sides of a ratio alike; the spread of those ratios',
    'is given with them. Each memory backend is measured in',
    'a process of its own (`MQTT_ALLOCATOR_BACKEND=tcmalloc` or `system`), since the backend',
    'is fixed when the addon loads.',
    '',
  );

  out.push('## Targets', '');
  out.push(table(['target', 'figure', 'status'], targetList.map((t) => [
    t.target, fmt(t.value, 2), targetStatus(t),
  ]), ['l', 'r', 'l']), '');

  const ar = results['alloc-release'];
  out.push('## allocate + release', '');
  out.push(
    '`threads.allocate(clientId, size)` + `threads.release(buffer)`, one byte touched (ours), against',
    '`Buffer.allocUnsafe(size)` plus the same accounting in JavaScript: a `Map` of per-client',
    'counters and a limit check, incremented then decremented (baseline), and against the',
    "addon's `externalBufferFloor(size)`: one external Buffer over a malloc'd block, detached at",
    'once, with no accounting (floor). CPU ns of the process per operation; the timed span includes a yield to the',
    'event loop every 1,000 operations, so deferred finalizers are paid for inside it.',
    `${ar.tcmalloc.rounds} rounds of ${fmt(ar.tcmalloc.count)} operations per variant and size.`,
    '',
  );
  out.push(table(
    ['size', 'backend', 'ours (ns)', 'baseline (ns)', 'floor (ns)', 'ours / baseline', 'ours / floor'],
    rows.filter((r) => r.name === 'alloc-release').map((r) => [
      formatSize(r.size), r.backend, spread(r.ours_spread), spread(r.baseline_spread),
      r.floor_spread ? spread(r.floor_spread) : '–', spread(r.ratio_spread, 2),
      r.floor_ratio_spread ? spread(r.floor_ratio_spread, 2) : '–',
    ]),
    ['r', 'l', 'r', 'r', 'r', 'r', 'r'],
  ), '');

  const q = results.queue;
  out.push('## SessionQueue push + shift', '');
  out.push(
    "`queue.push(payload)` + `queue.shift()` on a queue with overflow 'reject' (ours), against",
    'copying the payload into `Buffer.allocUnsafe(size)`, pushing it on an array, shifting it',
    'off and counting its bytes in a `Map` (baseline). CPU ns of the process per push + shift;',
    `${q.tcmalloc.rounds} rounds of ${fmt(q.tcmalloc.count)} operations per variant and size.`,
    '',
  );
  out.push(table(
    ['size', 'backend', 'ours (ns)', 'baseline (ns)', 'ours / baseline'],
    rows.filter((r) => r.name === 'queue').map((r) => [
      formatSize(r.size), r.backend, spread(r.ours_spread), spread(r.baseline_spread), spread(r.ratio_spread, 2),
    ]),
    ['r', 'l', 'r', 'r', 'r'],
  ), '');

  const b = results['broker-throughput'];
  const broker = rows.find((r) => r.name === 'broker-throughput');
  out.push('## Broker throughput', '');
  out.push(
    'Stock Aedes (default in-memory persistence) against Aedes with `createBoundedPersistence()`',
    '(client limits of 512 MiB, far above what is stored). Each broker runs in a child process',
    'on 127.0.0.1; one publisher and 10 subscribers (MQTT.js) run in the parent. Subscribers',
    'connect with `clean: false`, so every message is stored for each of them until its PUBACK;',
    `QoS 1, 1 KiB payloads, at most 64 unacknowledged publishes. A round publishes ${fmt(b.messages)}`,
    `messages and ends when all ${b.subscribers} subscribers have all of them; ${b.rounds} rounds per`,
    'broker, taking turns. Each round starts a new broker process and new clients, and warms them',
    'up with 2,000 messages, so that no one placement of a process on the cores decides every',
    'round. Figure: messages delivered (to all subscribers together) per second.',
    'Also shown: the CPU time (user and system) of the broker process per delivered message.',
    'Rounds this long measure the steady state: with rounds of 5,000 messages the ratio read',
    'about 0.9, because the start and the end of a round weighed more than the per-message cost.',
    '',
    'A third broker is a reference: stock Aedes whose in-memory persistence stores a plain',
    'Buffer copy of the payload for each subscriber, with no limits and no accounting. It shows',
    'what keeping one copy per subscriber costs in this setup, whoever makes it. TCP segments',
    'are those the machine sent during the round (Linux\'s OutSegs), per published message.',
    '',
  );
  const segments = (variant) => (b.segments === undefined ? '–' : spread(b.segments[variant], 1));
  out.push(table(
    ['broker', 'backend', 'delivered messages/s', 'broker CPU ns per delivery', 'TCP segments per message', 'dropped'],
    [
      ['stock Aedes', '–', spread(b.stock), spread(b.cpuStock), segments('stock'), '–'],
      ['stock Aedes, copying each payload per subscriber', '–', spread(b.copying), spread(b.cpuCopying), segments('copying'), '–'],
      ['Aedes + createBoundedPersistence', b.backend, spread(b.bounded), spread(b.cpuBounded), segments('bounded'), fmt(b.brokers.bounded.dropped)],
    ],
    ['l', 'l', 'r', 'r', 'r', 'r'],
  ), '', `bounded / stock: ${spread(broker.ratio_spread, 2)} in messages per second, ` +
    `${spread(b.cpuRatio, 2)} in broker CPU per delivery.`, '',
  `copying / stock: ${spread(b.copyingRatio, 2)} in messages per second, ` +
    `${spread(b.cpuCopyingRatio, 2)} in broker CPU per delivery.`, '');

  out.push('## Churn: 1,000 clients, accounting drift and RSS', '');
  const anyChurn = Object.values(results.churn)[0];
  out.push(
    `Each round registers ${fmt(anyChurn.clients)} clients (expiry 0), allocates two buffers in each`,
    `of their session, queue and worker allocators (${fmt(anyChurn.buffersPerRound)} buffers, 1 B to 16 KiB),`,
    'releases a third, drops a third for the garbage collector, and keeps the rest through',
    '`unregisterSession` and `cleanupExpiredAllocators()` before letting them go too. The charge',
    'of each allocation is the change of the global usage it caused (and must equal the change',
    "of the client's usage). After each phase the global usage and every client's usage are",
    'compared with the sum of the charges of the live buffers; at the end of each round',
    'usage and live buffers must be back at their starting values. Any difference is drift,',
    'and drift fails the benchmark.',
    '',
  );
  out.push(table(
    ['backend', 'rounds', 'checks', 'mismatches', 'largest drift (B)', 'final drift (B)', 'result'],
    Object.entries(results.churn).map(([backend, c]) => [
      backend, fmt(c.rounds), fmt(c.drift.checks), fmt(c.drift.mismatches), fmt(c.drift.maxAbs),
      fmt(c.finalDrift), driftFree(c) ? 'no drift' : `DRIFT${c.drift.first ? ` (first: round ${c.drift.first.round}, ${c.drift.first.label})` : ''}`,
    ]),
    ['l', 'r', 'r', 'r', 'r', 'r', 'l'],
  ), '');
  const mib = (bytes) => fmt(bytes / 2 ** 20, 1);
  out.push('RSS over time (MiB, after a full garbage collection; "usage" is the global allocator usage in bytes):', '');
  const backends = Object.keys(results.churn);
  const rounds = results.churn[backends[0]].rss.map((s) => s.round);
  out.push(table(
    ['round', ...backends.flatMap((be) => [`${be} RSS`, `${be} usage`])],
    rounds.map((round, i) => [String(round), ...backends.flatMap((be) => {
      const s = results.churn[be].rss[i];
      return [mib(s.rss), fmt(s.usage)];
    })]),
  ), '');

  out.push('## Worker threads', '');
  const w = Object.values(results.workers)[0];
  out.push(
    `allocate + release of 1 KiB, ${fmt(w.countPerWorker)} operations per worker, each worker with a client`,
    `of its own, after a common start; total operations per second over ${w.rounds} rounds.`,
    '`Buffer.allocUnsafeSlow(1024)` (one byte touched), run the same way in the same process,',
    'shows how far this machine lets one-buffer-per-operation work scale at all.',
    '',
  );
  out.push(table(
    ['backend', 'variant', '1 worker (ops/s)', '2 workers (ops/s)', '2 / 1'],
    Object.entries(results.workers).flatMap(([backend, x]) => [
      [backend, 'ours', spread(x.one), spread(x.two), fmt(x.two.median / x.one.median, 2)],
      [backend, 'Buffer.allocUnsafeSlow', spread(x.referenceOne), spread(x.referenceTwo),
        fmt(x.referenceTwo.median / x.referenceOne.median, 2)],
    ]),
    ['l', 'l', 'r', 'r', 'r'],
  ), '');

  out.push('## Memory per live buffer', '');
  const o = results.overhead['ours-tcmalloc'];
  out.push(
    `${fmt(o.count)} buffers of 1 KiB, filled and kept alive, in a fresh process; growth per buffer`,
    'beyond its usable size (the charge, or 1,024 B for the reference). "V8 heap" is the growth',
    'of the resident V8 heap, "native" is RSS less that, "heapUsed" the live JavaScript objects,',
    '"external" and "arrayBuffers" the growth of those `process.memoryUsage()` fields less the',
    'usable size (-1,024 means the field does not count the buffer). Two references: the floor,',
    'an external Buffer over a malloc\'d 1 KiB block with no accounting (what Node spends on any',
    'external Buffer, whatever creates it), and `Buffer.allocUnsafeSlow` (one unpooled backing',
    `store per Buffer). Ours (tcmalloc) less the floor, ${fmt(packageOverhead(results.overhead))} B of RSS, is what this`,
    'package adds per buffer: its record and its slot in the live-buffer table.',
    '',
  );
  out.push(table(
    ['variant', 'usable (B)', 'RSS overhead (B)', 'V8 heap (B)', 'native (B)', 'heapUsed (B)', 'external (B)', 'arrayBuffers (B)'],
    Object.entries(results.overhead).map(([key, x]) => [
      key, fmt(x.usable), spread(x.rss), fmt(x.heapPhysical), fmt(x.native), fmt(x.heapUsed),
      fmt(x.external), fmt(x.arrayBuffers),
    ]),
    ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  ), '');

  out.push('## Reproduce', '');
  out.push(
    '```sh',
    'npm ci',
    'npm run build',
    'node bench/run.js          # full run, about three minutes',
    'node bench/run.js --quick  # under two minutes',
    '```',
    '',
    'One case alone prints its JSON for the backend in the environment, e.g.',
    '`MQTT_ALLOCATOR_BACKEND=system node bench/alloc-release.js --quick` (churn and overhead',
    'need `node --expose-gc`; `node bench/broker-throughput.js --quick` starts its own brokers).',
    'Only loopback traffic is used. The machine is shared, so single figures move by 10–30 %',
    'between runs; compare ratios from the same run.',
    '',
  );
  return out.join('\n');
}

async function main() {
  const quick = process.argv.includes('--quick');
  const started = Date.now();
  const results = {};
  for (const [name, module] of Object.entries(CASES)) {
    const t0 = Date.now();
    process.stderr.write(`${name}... `);
    results[name] = await module.run({ quick });
    process.stderr.write(`${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  }
  const rows = caseRows(results);
  const targetList = targets(results, rows);
  const tcBackend = results['alloc-release'].tcmalloc.backend;
  const meta = {
    quick,
    date: new Date().toISOString(),
    machine: common.machineInfo(),
    tcmalloc: tcBackend.name === 'tcmalloc' ? tcBackend.version : undefined,
    seconds: Math.round((Date.now() - started) / 1000),
  };
  const json = {
    node: process.version,
    date: meta.date,
    quick,
    machine: meta.machine,
    tcmalloc: tcBackend,
    seconds: meta.seconds,
    cases: rows,
    churn: results.churn,
    workers: results.workers,
    overhead: results.overhead,
    broker: results['broker-throughput'],
    targets: targetList,
  };
  fs.mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
  fs.writeFileSync(RESULTS_FILE, `${JSON.stringify(json, null, 2)}\n`);
  fs.writeFileSync(REPORT_FILE, report(meta, results, rows, targetList));

  for (const t of targetList) {
    const status = targetStatus(t);
    console.log(`${status.padEnd(12)} ${t.target}: ${fmt(t.value, 2)}`);
  }
  console.log(`wrote ${path.relative(process.cwd(), REPORT_FILE)} and ${path.relative(process.cwd(), RESULTS_FILE)} in ${meta.seconds} s`);
  const drifting = Object.entries(results.churn).filter(([, c]) => !driftFree(c));
  if (drifting.length > 0) {
    console.error(`accounting drift in the churn workload: ${drifting.map(([b]) => b).join(', ')}`);
    process.exitCode = 1;
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
