// Property tests of the accounting on one thread: random sequences of
// register, allocate (each component and the cache), release, drop for the
// garbage collector, limit changes, unregister and expiry cleanup. After
// every step every counter must equal the sum of the usable sizes the model
// recorded, no node may be above its limit unless its limit was lowered
// below its usage, and at the end everything is back at the baseline.
//
// numRuns stays modest; MQSA_LONG=1 runs many more (see commands.ts).
import fc from 'fast-check';
import pino from 'pino';

import { GlobalSessionManager, getLogger } from '../../lib';
import { collectGarbage, eventLoopTurns, settle } from '../helpers/memory';
import { commandsArbitrary, LONG } from './commands';
import { AccountingModel } from './model';

const manager = GlobalSessionManager.instance();
const sessions = manager.getThreadManager();
// Ids a broker must handle like any other: non-ASCII, astral, and names of
// Object.prototype members.
const CLIENTS = ['prop-one', 'prop-ü', '__proto__', 'prop-\u{1F600}'];
const previousLogger = getLogger();

/** One full collection, then turns for Node to run the Buffer finalizers;
 * lighter than settle(), which the suite could not afford at every step. */
async function collect(): Promise<void> {
  collectGarbage();
  await eventLoopTurns(2);
}

// Generous: each step runs a full garbage collection, which gets slower as
// the jest process's heap grows, and CI shares the machine.
jest.setTimeout(LONG ? 3_600_000 : 300_000);

beforeAll(async () => {
  // Rejected allocations are expected here, so their warnings are silenced.
  manager.setLogger(pino({ level: 'silent' }));
  // Suites that ran before in this process may have left sessions on this
  // thread that expire while the properties run. A cleanup step would then
  // remove them and move the thread's figures away from the baseline, so
  // they are removed first.
  for (const client of manager.getClientMemoryDetails()) {
    if (sessions.hasSession(client.clientId)) sessions.sessionAllocators.cleanupSessionAllocators(client.clientId);
  }
  await settle();
});

afterAll(() => {
  manager.setLogger(previousLogger);
});

test('counters match live charges', async () => {
  await fc.assert(
    fc.asyncProperty(commandsArbitrary(CLIENTS.length, LONG ? 120 : 40), async (commands) => {
      const model = new AccountingModel({ manager, sessions }, { clients: CLIENTS, collect, processWide: true });
      model.start();
      try {
        for (const command of commands) {
          await model.apply(command);
          model.check();
        }
        await model.finish();
      } catch (error) {
        await model.dispose();
        throw error;
      }
    }),
    { numRuns: LONG ? 300 : 40 },
  );
});
