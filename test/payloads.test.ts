// Payload blocks: bytes kept native under a numeric handle, charged to the
// client like any allocation.
import { GlobalSessionManager, LimitExceededEvent } from '../lib';
import { exited, nextMessage, startWorker, thrown } from './helpers/memory';

const manager = GlobalSessionManager.instance();
const sessions = manager.getThreadManager();
let counter = 0;
const clients: string[] = [];

function client(memoryLimit = 0): string {
  counter += 1;
  const clientId = `payload-${counter}`;
  sessions.registerSession(clientId, { memoryLimit, expiryInterval: 0 });
  clients.push(clientId);
  return clientId;
}

afterAll(() => {
  for (const clientId of clients) sessions.sessionAllocators.cleanupSessionAllocators(clientId);
});

describe('store, load and free', () => {
  test('load returns an equal copy', () => {
    const clientId = client();
    const handle = sessions.storePayload(clientId, Buffer.from('hello payload'));

    const loaded = sessions.loadPayload(handle as number);

    expect(loaded.toString()).toBe('hello payload');
    expect(sessions.isSessionBuffer(loaded)).toBe(false);
    sessions.freePayload(handle as number);
  });

  test('store charges the queue by default', () => {
    const clientId = client();
    const queue = sessions.sessionAllocators.getSessionQueueAllocator(clientId);

    const handle = sessions.storePayload(clientId, Buffer.alloc(1000)) as number;

    expect(queue.usage).toBeGreaterThanOrEqual(1000);
    expect(sessions.payloadSize(handle)).toBe(1000);
    sessions.freePayload(handle);
    expect(queue.usage).toBe(0);
  });

  test('store charges the chosen component', () => {
    const clientId = client();
    const worker = sessions.sessionAllocators.getSessionWorkerAllocator(clientId);

    const handle = sessions.storePayload(clientId, Buffer.alloc(300), 'worker') as number;

    expect(worker.usage).toBeGreaterThanOrEqual(300);
    sessions.freePayload(handle);
  });

  test('empty payload round-trips', () => {
    const clientId = client();
    const handle = sessions.storePayload(clientId, new Uint8Array(0)) as number;

    expect(sessions.loadPayload(handle).length).toBe(0);
    sessions.freePayload(handle);
  });

  test('load with the known size', () => {
    const clientId = client();
    const handle = sessions.storePayload(clientId, Buffer.from('sized')) as number;

    expect(sessions.loadPayload(handle, 5).toString()).toBe('sized');
    sessions.freePayload(handle);
  });

  test('load with a wrong size throws', () => {
    const clientId = client();
    const handle = sessions.storePayload(clientId, Buffer.from('sized')) as number;
    const usage = sessions.getSessionMemoryUsage(clientId);

    const error = thrown(() => sessions.loadPayload(handle, 4));

    expect(error.code).toBe('MQ_ERR_INVALID_ARGS');
    expect(error.message).toContain('the payload has 5 bytes, not the 4 given as its size');
    expect(thrown(() => sessions.loadPayload(handle, -1)).code).toBe('MQ_ERR_INVALID_ARGS');
    expect(sessions.getSessionMemoryUsage(clientId)).toBe(usage);
    expect(sessions.loadPayload(handle).toString()).toBe('sized');
    sessions.freePayload(handle);
  });

  test('take returns a copy and frees the payload', () => {
    const clientId = client();
    const handle = sessions.storePayload(clientId, Buffer.from('taken once')) as number;
    const usage = sessions.getSessionMemoryUsage(clientId);
    expect(usage).toBeGreaterThan(0);

    const copy = sessions.takePayload(handle, 10);

    expect(copy.toString()).toBe('taken once');
    expect(sessions.getSessionMemoryUsage(clientId)).toBe(0);
    expect(thrown(() => sessions.freePayload(handle)).message).toContain('is not live');
    expect(thrown(() => sessions.takePayload(handle)).code).toBe('MQ_ERR_INVALID_ARGS');
  });

  test('take without a size, and of an empty payload', () => {
    const clientId = client();
    const text = sessions.storePayload(clientId, Buffer.from('no size given')) as number;
    const empty = sessions.storePayload(clientId, Buffer.alloc(0)) as number;

    expect(sessions.takePayload(text).toString()).toBe('no size given');
    expect(sessions.takePayload(empty).length).toBe(0);
    expect(sessions.getSessionMemoryUsage(clientId)).toBe(0);
  });

  test('take with a wrong size throws and frees nothing', () => {
    const clientId = client();
    const handle = sessions.storePayload(clientId, Buffer.from('sized')) as number;
    const usage = sessions.getSessionMemoryUsage(clientId);

    const error = thrown(() => sessions.takePayload(handle, 6));

    expect(error.code).toBe('MQ_ERR_INVALID_ARGS');
    expect(error.message).toContain('the payload has 5 bytes');
    expect(thrown(() => sessions.takePayload(handle, 1.5)).code).toBe('MQ_ERR_INVALID_ARGS');
    expect(sessions.getSessionMemoryUsage(clientId)).toBe(usage);
    expect(sessions.takePayload(handle, 5).toString()).toBe('sized');
  });

  test('second free throws and frees nothing', () => {
    const clientId = client();
    const first = sessions.storePayload(clientId, Buffer.alloc(100)) as number;
    sessions.freePayload(first);
    const second = sessions.storePayload(clientId, Buffer.alloc(100)) as number;
    const usage = sessions.getSessionMemoryUsage(clientId);

    const error = thrown(() => sessions.freePayload(first));

    expect(error.code).toBe('MQ_ERR_INVALID_ARGS');
    expect(second).not.toBe(first);
    expect(sessions.getSessionMemoryUsage(clientId)).toBe(usage);
    sessions.freePayload(second);
  });

  test('unknown handles rejected', () => {
    for (const handle of [2 ** 52, 12345]) {
      const error = thrown(() => sessions.loadPayload(handle));
      expect(error.code).toBe('MQ_ERR_INVALID_ARGS');
      expect(error.message).toContain(`payload handle ${handle} is not live`);
    }
    for (const [handle, shown] of [[0, '0'], [-1, '-1'], [1.5, '1.5'], [Number.NaN, 'NaN'], [2 ** 60, '1.152921504606847e+18']] as const) {
      const error = thrown(() => sessions.loadPayload(handle));
      expect(error.code).toBe('MQ_ERR_INVALID_ARGS');
      expect(error.message).toContain(`invalid payload handle ${shown}: expected a positive safe integer`);
    }
    expect(thrown(() => sessions.freePayload('1' as unknown as number)).code).toBe('MQ_ERR_INVALID_ARGS');
  });

  test('non-byte payload rejected', () => {
    const clientId = client();
    const error = thrown(() => sessions.storePayload(clientId, 'text' as unknown as Uint8Array));

    expect(error.code).toBe('MQ_ERR_INVALID_ARGS');
    expect(error.message).toContain('"text"');
    expect(sessions.getSessionMemoryUsage(clientId)).toBe(0);
  });
});

describe('limits', () => {
  test('refused store returns undefined', () => {
    const clientId = client(2048);
    const events: LimitExceededEvent[] = [];
    const listener = (event: LimitExceededEvent): void => {
      events.push(event);
    };
    manager.on('limitExceeded', listener);

    const handle = sessions.storePayload(clientId, Buffer.alloc(4096));

    manager.off('limitExceeded', listener);
    expect(handle).toBeUndefined();
    expect(events).toHaveLength(1);
    expect(events[0]?.clientId).toBe(clientId);
    expect(sessions.getSessionMemoryUsage(clientId)).toBe(0);
  });

  test('payload survives session cleanup', () => {
    const clientId = client();
    const handle = sessions.storePayload(clientId, Buffer.from('kept')) as number;
    const before = manager.getGlobalMemoryUsage();

    sessions.sessionAllocators.cleanupSessionAllocators(clientId);

    expect(sessions.loadPayload(handle).toString()).toBe('kept');
    expect(manager.getGlobalMemoryUsage()).toBe(before);
    sessions.freePayload(handle);
    expect(manager.getGlobalMemoryUsage()).toBeLessThan(before);
  });
});

describe('threads', () => {
  test('worker exit frees its payloads', async () => {
    const baseline = manager.getGlobalMemoryUsage();
    const worker = startWorker(`
      const { workerData, parentPort } = require('node:worker_threads');
      const { GlobalSessionManager } = require(workerData.root);
      const sessions = GlobalSessionManager.instance().getThreadManager();
      sessions.registerSession('payload-worker', { expiryInterval: 3600 });
      for (let i = 0; i < 10; i++) sessions.storePayload('payload-worker', Buffer.alloc(5000));
      parentPort.postMessage(GlobalSessionManager.instance().getGlobalMemoryUsage());
    `);

    const during = await nextMessage<number>(worker);
    await exited(worker);

    expect(during).toBeGreaterThanOrEqual(baseline + 50000);
    expect(manager.getGlobalMemoryUsage()).toBe(baseline);
  });

  test('same slot on two threads names neither', async () => {
    // Two new threads each store one payload in their first slot, with the
    // same generation. Only the thread tag in the handle distinguishes them.
    const script = `
      const { workerData, parentPort } = require('node:worker_threads');
      const { GlobalSessionManager } = require(workerData.root);
      const sessions = GlobalSessionManager.instance().getThreadManager();
      const clientId = 'payload-slot-' + require('node:worker_threads').threadId;
      sessions.registerSession(clientId, { expiryInterval: 0 });
      const own = sessions.storePayload(clientId, Buffer.from(clientId));
      parentPort.postMessage(own);
      parentPort.once('message', (foreign) => {
        const outcome = {};
        for (const name of ['loadPayload', 'takePayload', 'payloadSize', 'freePayload']) {
          try {
            sessions[name](foreign);
            outcome[name] = 'accepted';
          } catch (error) {
            outcome[name] = error.code;
          }
        }
        outcome.own = sessions.loadPayload(own).toString();
        parentPort.postMessage(outcome);
        parentPort.once('message', () => process.exit(0));
      });
    `;
    const first = startWorker(script);
    const second = startWorker(script);
    let firstHandle: number;
    let secondHandle: number;
    let outcome: Record<string, string>;
    try {
      [firstHandle, secondHandle] = await Promise.all([nextMessage<number>(first), nextMessage<number>(second)]);
      first.postMessage(secondHandle);
      outcome = await nextMessage<Record<string, string>>(first);
      first.postMessage('done');
      second.postMessage(firstHandle);
      await nextMessage<Record<string, string>>(second);
      second.postMessage('done');
      await Promise.all([exited(first), exited(second)]);
    } finally {
      // A worker left running would keep jest from exiting after a failure.
      await Promise.all([first.terminate(), second.terminate()]);
    }

    expect(firstHandle).not.toBe(secondHandle);
    expect(outcome).toEqual({
      loadPayload: 'MQ_ERR_INVALID_ARGS',
      takePayload: 'MQ_ERR_INVALID_ARGS',
      payloadSize: 'MQ_ERR_INVALID_ARGS',
      freePayload: 'MQ_ERR_INVALID_ARGS',
      own: expect.stringMatching(/^payload-slot-/),
    });
  });

  test('handle of another thread rejected', async () => {
    const worker = startWorker(`
      const { workerData, parentPort } = require('node:worker_threads');
      const { GlobalSessionManager } = require(workerData.root);
      const sessions = GlobalSessionManager.instance().getThreadManager();
      sessions.registerSession('payload-worker-2', { expiryInterval: 0 });
      const handle = sessions.storePayload('payload-worker-2', Buffer.alloc(10));
      parentPort.postMessage(handle);
      parentPort.once('message', () => process.exit(0));
    `);
    const handle = await nextMessage<number>(worker);
    const usage = manager.getGlobalMemoryUsage();

    const error = thrown(() => sessions.freePayload(handle));

    worker.postMessage('done');
    await exited(worker);
    expect(error.code).toBe('MQ_ERR_INVALID_ARGS');
    expect(usage).toBeGreaterThan(0);
  });
});
