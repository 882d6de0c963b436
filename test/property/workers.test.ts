// The accounting properties across two worker threads at once, a lighter
// variant of accounting.test.ts: each worker runs its own random command
// sequence with its own clients and checks its thread's figures after every
// step, while both change one process-wide state. Expiry cleanups on either
// thread remove the other's expired sessions, so each worker also sees its
// sessions vanish under it. Afterwards the main thread checks that the
// process is back at its baseline.
//
// The workers run the same model as the single-thread test: model.ts is
// transpiled here and evaluated in each worker against the compiled package.
import fs from 'node:fs';
import path from 'node:path';

import fc from 'fast-check';
import ts from 'typescript';

import { GlobalSessionManager } from '../../lib';
import { exited, nextMessage, settle, startWorker } from '../helpers/memory';
import { commandsArbitrary, LONG } from './commands';
import type { Command } from './model';

const manager = GlobalSessionManager.instance();

const modelJs = ts.transpileModule(fs.readFileSync(path.join(__dirname, 'model.ts'), 'utf8'), {
  compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 },
}).outputText;

const WORKER = `
const { workerData, parentPort } = require('node:worker_threads');
const { GlobalSessionManager } = require(workerData.root);
const pino = require(require.resolve('pino', { paths: [workerData.root] }));
const loaded = { exports: {} };
new Function('exports', 'require', 'module', workerData.modelJs)(loaded.exports, require, loaded);
const { AccountingModel } = loaded.exports;

const manager = GlobalSessionManager.instance();
manager.setLogger(pino({ level: 'silent' }));
const sessions = manager.getThreadManager();
async function collect() {
  globalThis.gc();
  for (let i = 0; i < 2; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}
const model = new AccountingModel({ manager, sessions }, { clients: workerData.clients, collect, processWide: false });
(async () => {
  model.start();
  for (const command of workerData.commands) {
    await model.apply(command);
    model.check();
  }
  await model.finish();
  parentPort.postMessage({ ok: true });
})().catch((error) => {
  parentPort.postMessage({ ok: false, message: String(error && error.stack ? error.stack : error), log: model.log });
});
`;

interface WorkerResult {
  ok: boolean;
  message?: string;
  log?: string[];
}

async function runWorker(clients: string[], commands: Command[]): Promise<WorkerResult> {
  const worker = startWorker(WORKER, { modelJs, clients, commands });
  // Listen for the exit before awaiting the message: when a worker ends
  // right after posting, Node emits 'message' and 'exit' in one callback,
  // before an await placed after the message could attach its listener.
  const exit = exited(worker);
  // A failure is reported through nextMessage; keep its twin from also
  // surfacing as an unhandled rejection.
  exit.catch(() => undefined);
  const result = await nextMessage<WorkerResult>(worker);
  expect(await exit).toBe(0);
  return result;
}

const CLIENTS = [
  ['prop-w1-a', 'prop-w1-ü'],
  ['prop-w2-a', 'prop-w2-\u{1F600}'],
];

jest.setTimeout(LONG ? 3_600_000 : 300_000);

beforeAll(async () => {
  await settle();
});

test('two workers keep exact accounting', async () => {
  const sequence = commandsArbitrary(2, LONG ? 80 : 30);
  await fc.assert(
    fc.asyncProperty(sequence, sequence, async (first, second) => {
      const before = manager.getGlobalMemoryUsage();
      const results = await Promise.all([runWorker(CLIENTS[0], first), runWorker(CLIENTS[1], second)]);
      results.forEach((result, index) => {
        if (!result.ok) throw new Error(`worker ${index + 1}: ${result.message}\nits steps: ${(result.log ?? []).join('\n')}`);
      });
      // Each worker ended with its buffers released and its sessions
      // removed, and its thread's teardown ran: nothing of theirs is left.
      expect(manager.getGlobalMemoryUsage()).toBe(before);
      const left = [...manager.getClientMemoryUsage().keys()].filter((id) => CLIENTS.flat().includes(id));
      expect(left).toEqual([]);
    }),
    { numRuns: LONG ? 100 : 12 },
  );
});
