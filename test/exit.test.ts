// Exit paths: a child process that exits with live session buffers, naturally
// or with process.exit(), also with a worker thread still holding buffers.
import { spawnSync } from 'node:child_process';

import { PACKAGE_ROOT } from './helpers/memory';

const PRELUDE = `
const { GlobalSessionManager } = require(process.argv[1]);
const manager = GlobalSessionManager.instance();
const sessions = manager.getThreadManager();
sessions.registerSession('exit-client', { memoryLimit: 0, expiryInterval: 3600 });
globalThis.kept = [];
for (const component of ['session', 'queue', 'worker']) {
  for (let i = 0; i < 20; i++) globalThis.kept.push(sessions.allocate('exit-client', 4096, component));
}
for (let i = 0; i < 5; i++) globalThis.kept.push(sessions.allocateCache(2048));
globalThis.kept.push(sessions.allocate('exit-client', 0));
globalThis.queue = sessions.createSessionQueue('exit-client', { overflow: 'reject' });
for (let i = 0; i < 10; i++) globalThis.queue.push(Buffer.alloc(1000, i));
for (let i = 0; i < 100; i++) sessions.allocate('exit-client', 512);
sessions.release(globalThis.kept.pop());
`;

const WORKER_HOLDER = `
const { Worker } = require('node:worker_threads');
const worker = new Worker(\`
  const { workerData, parentPort } = require('node:worker_threads');
  const { GlobalSessionManager } = require(workerData);
  const sessions = GlobalSessionManager.instance().getThreadManager();
  sessions.registerSession('exit-worker-client', { expiryInterval: 3600 });
  globalThis.kept = [];
  for (let i = 0; i < 50; i++) globalThis.kept.push(sessions.allocate('exit-worker-client', 8192));
  parentPort.postMessage('ready');
  setInterval(() => {}, 1000);
\`, { eval: true, workerData: process.argv[1] });
`;

interface ChildResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the script `times` times, because a race at exit may not show in one run. */
function runChild(source: string, nodeArgs: string[], times: number): ChildResult[] {
  return Array.from({ length: times }, () => {
    const result = spawnSync(process.execPath, [...nodeArgs, '-e', source, PACKAGE_ROOT], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
  });
}

const BUSY_WORKER = `
const { Worker } = require('node:worker_threads');
const worker = new Worker(\`
  const { workerData, parentPort } = require('node:worker_threads');
  const { GlobalSessionManager } = require(workerData);
  const sessions = GlobalSessionManager.instance().getThreadManager();
  sessions.registerSession('exit-busy-client', { expiryInterval: 3600, memoryLimit: 200000 });
  const kept = [];
  parentPort.postMessage('ready');
  // Runs until the process ends, near the limit. When either allocation is
  // refused, the oldest block is released to make room.
  for (;;) {
    const small = sessions.tryAllocate('exit-busy-client', 100);
    if (small !== undefined) kept.push(small);
    const extra = sessions.tryAllocate('exit-busy-client', 1000);
    if (extra !== undefined) kept.push(extra);
    if (small === undefined || extra === undefined || kept.length > 1000) sessions.release(kept.shift());
  }
\`, { eval: true, workerData: process.argv[1] });
`;

const scenarios: Array<[string, string, string[], number]> = [
  ['natural exit with live buffers', `${PRELUDE} console.log('done');`, [], 1],
  ['process.exit(0) with live buffers', `${PRELUDE} console.log('done'); process.exit(0);`, [], 1],
  [
    'process.exit(0) from a timer',
    `${PRELUDE} setTimeout(() => { console.log('done'); process.exit(0); }, 10);`,
    [],
    1,
  ],
  [
    'natural exit after garbage collection',
    `${PRELUDE} global.gc(); setImmediate(() => { global.gc(); console.log('done'); });`,
    ['--expose-gc'],
    1,
  ],
  [
    'natural exit after expiry cleanup',
    `${PRELUDE} sessions.unregisterSession('exit-client'); sessions.registerSession('exit-client', { expiryInterval: 0 });
     sessions.unregisterSession('exit-client'); manager.cleanupExpiredAllocators(); console.log('done');`,
    [],
    1,
  ],
  [
    'natural exit with the cleanup timer',
    `${PRELUDE} manager.startExpiryCleanup(1); console.log('done');`,
    [],
    1,
  ],
  [
    'process.exit(0) with a live worker',
    `${PRELUDE} ${WORKER_HOLDER} worker.once('message', () => { console.log('done'); process.exit(0); });`,
    [],
    1,
  ],
  [
    'natural exit with an unref()ed worker',
    `${PRELUDE} ${WORKER_HOLDER} worker.once('message', () => { worker.unref(); console.log('done'); });`,
    [],
    1,
  ],
  [
    'natural exit after worker.terminate()',
    `${PRELUDE} ${WORKER_HOLDER} worker.once('message', () => worker.terminate().then(() => console.log('done')));`,
    [],
    1,
  ],
  [
    'process.exit(0) with a busy worker',
    `${PRELUDE} ${BUSY_WORKER} worker.once('message', () => { console.log('done'); process.exit(0); });`,
    [],
    8,
  ],
  [
    'natural exit with a busy unref()ed worker',
    `${PRELUDE} ${BUSY_WORKER} worker.once('message', () => { worker.unref(); console.log('done'); });`,
    [],
    8,
  ],
];

describe.each(scenarios)('%s', (_name, source, nodeArgs, times) => {
  let results: ChildResult[];

  beforeAll(() => {
    results = runChild(source, nodeArgs, times);
  });

  test('exit code is 0', () => {
    expect(results.map((result) => result.status)).toEqual(results.map(() => 0));
  });

  test('no signal', () => {
    expect(results.map((result) => result.signal)).toEqual(results.map(() => null));
  });

  test('the script ran to its end', () => {
    expect(results.map((result) => result.stdout)).toEqual(results.map(() => 'done\n'));
  });

  test('no output on stderr', () => {
    expect(results.map((result) => result.stderr)).toEqual(results.map(() => ''));
  });
});
