// worker_threads: one process-wide state seen from every thread, limits
// across threads, ids held by another thread, and thread teardown with live
// buffers. Workers load the compiled package from dist/.
import { MessageChannel } from 'node:worker_threads';

import { GlobalSessionManager } from '../lib';
import { exited, nextMessage, settle, startWorker, thrown } from './helpers/memory';

const manager = GlobalSessionManager.instance();
const sessions = manager.getThreadManager();
const nodeMajor = Number(process.versions.node.split('.')[0]);

const PRELUDE = `
const { workerData, parentPort } = require('node:worker_threads');
const { GlobalSessionManager } = require(workerData.root);
const manager = GlobalSessionManager.instance();
const sessions = manager.getThreadManager();
`;

afterEach(() => {
  manager.setGlobalMemoryLimit(0);
  manager.setThreadMemoryLimit(0);
});

describe('queue drops', () => {
  test("the main thread counts a worker's drops", async () => {
    const before = manager.getQueueDrops();
    const worker = startWorker(
      `${PRELUDE}
      sessions.registerSession('workers-queue-drops', { memoryLimit: 0, expiryInterval: 0 });
      const queue = sessions.createSessionQueue('workers-queue-drops', { overflow: 'drop-oldest', maxMessages: 1 });
      for (let i = 0; i < 5; i += 1) queue.push(Buffer.alloc(64, i));
      queue.clear();
      sessions.sessionAllocators.cleanupSessionAllocators('workers-queue-drops');
      parentPort.postMessage({ drops: manager.getQueueDrops() });`,
    );
    const seen = await nextMessage<{ drops: number }>(worker);
    await exited(worker);

    expect(manager.getQueueDrops()).toBe(before + 4);
    expect(seen.drops).toBe(before + 4);
  });
});

describe('shared state', () => {
  const CLIENT = 'workers-shared';
  let buffer: Buffer;
  let seen: Record<string, unknown>;

  beforeAll(async () => {
    sessions.registerSession(CLIENT, { memoryLimit: 0, expiryInterval: 0 });
    buffer = sessions.allocate(CLIENT, 3000);
    manager.setClientMemoryLimit(CLIENT, 1000);
    manager.setGlobalMemoryLimit(1024 ** 3);
    const worker = startWorker(
      `${PRELUDE}
      const id = workerData.clientId;
      parentPort.postMessage({
        usage: manager.getClientMemoryUsage().get(id),
        limit: manager.getClientMemoryLimit(id),
        globalLimit: manager.getGlobalMemoryLimit(),
        globalUsage: manager.getGlobalMemoryUsage(),
        exceeded: manager.isClientMemoryLimitExceeded(id),
        heldHere: sessions.hasSession(id),
        sameHandle: GlobalSessionManager.instance() === manager,
      });`,
      { clientId: CLIENT },
    );
    seen = await nextMessage(worker);
    await exited(worker);
  });

  afterAll(() => {
    sessions.release(buffer);
    sessions.sessionAllocators.cleanupSessionAllocators(CLIENT);
  });

  test("a worker sees the main thread's client usage", () => {
    expect(seen.usage).toBe(sessions.getSessionMemoryUsage(CLIENT));
  });

  test("a worker sees the main thread's client limit", () => {
    expect(seen.limit).toBe(1000);
  });

  test('a worker sees the global limit', () => {
    expect(seen.globalLimit).toBe(1024 ** 3);
  });

  test('a worker sees the client over its limit', () => {
    expect(seen.exceeded).toBe(true);
  });

  test('a worker sees global usage including the main thread', () => {
    expect(seen.globalUsage).toBeGreaterThanOrEqual(sessions.getSessionMemoryUsage(CLIENT));
  });

  test("the main thread's session is not held by the worker", () => {
    expect(seen.heldHere).toBe(false);
  });

  test('instance() returns one handle per thread', () => {
    expect(seen.sameHandle).toBe(true);
  });

  test('a limit set in a worker applies in the main thread', async () => {
    const worker = startWorker(`${PRELUDE} manager.setClientMemoryLimit(workerData.clientId, 4242);`, {
      clientId: CLIENT,
    });
    await exited(worker);
    expect(manager.getClientMemoryLimit(CLIENT)).toBe(4242);
  });

  test("a worker's client is listed in the main thread", async () => {
    const worker = startWorker(
      `${PRELUDE}
      sessions.registerSession('workers-listed', { expiryInterval: 0 });
      globalThis.kept = sessions.allocate('workers-listed', 5000);
      parentPort.postMessage('ready');
      parentPort.once('message', () => process.exit(0));`,
    );
    await nextMessage(worker);
    const usage = manager.getClientMemoryUsage().get('workers-listed') ?? 0;
    const done = exited(worker);
    worker.postMessage('stop');
    await done;
    expect(usage).toBeGreaterThanOrEqual(5000);
  });
});

describe('global limit across threads', () => {
  const CONTENDER = `${PRELUDE}
    const id = workerData.clientId;
    sessions.registerSession(id, { memoryLimit: 0, expiryInterval: 0 });
    const gate = new Int32Array(workerData.gate);
    parentPort.postMessage('ready');
    Atomics.wait(gate, 0, 0);
    let maxSeen = 0;
    let refused = 0;
    let allocated = 0;
    const held = [];
    for (let i = 0; i < workerData.rounds; i++) {
      const buffer = sessions.tryAllocate(id, workerData.size);
      if (buffer === undefined) {
        refused += 1;
        if (held.length > 0) sessions.release(held.shift());
      } else {
        allocated += 1;
        held.push(buffer);
      }
      const usage = manager.getGlobalMemoryUsage();
      if (usage > maxSeen) maxSeen = usage;
      if (i % 5 === 0 && held.length > 0) sessions.release(held.pop());
    }
    for (const buffer of held) sessions.release(buffer);
    parentPort.postMessage({ maxSeen, refused, allocated });`;

  interface Result {
    maxSeen: number;
    refused: number;
    allocated: number;
  }

  let limit: number;
  let baseline: number;
  let results: Result[];
  let after: number;

  beforeAll(async () => {
    await settle();
    baseline = manager.getGlobalMemoryUsage();
    limit = baseline + 256 * 1024;
    manager.setGlobalMemoryLimit(limit);
    const gate = new SharedArrayBuffer(4);
    const workers = [1, 2].map((n) =>
      startWorker(CONTENDER, { clientId: `workers-contender-${n}`, gate, rounds: 20_000, size: 4096 }),
    );
    await Promise.all(workers.map((worker) => nextMessage(worker)));
    const pending = workers.map((worker) => nextMessage<Result>(worker));
    const exits = workers.map((worker) => exited(worker));
    Atomics.store(new Int32Array(gate), 0, 1);
    Atomics.notify(new Int32Array(gate), 0);
    results = await Promise.all(pending);
    await Promise.all(exits);
    after = manager.getGlobalMemoryUsage();
    manager.setGlobalMemoryLimit(0);
  });

  test('the limit was reached', () => {
    expect(results[0].refused + results[1].refused).toBeGreaterThan(0);
  });

  test('both workers allocated', () => {
    expect(results.map((result) => result.allocated > 0)).toEqual([true, true]);
  });

  test('usage sampled in the first worker never passed the limit', () => {
    expect(results[0].maxSeen).toBeLessThanOrEqual(limit);
  });

  test('usage sampled in the second worker never passed the limit', () => {
    expect(results[1].maxSeen).toBeLessThanOrEqual(limit);
  });

  test('usage returns to its baseline after the workers exit', () => {
    expect(after).toBe(baseline);
  });
});

describe('global limit from the main thread', () => {
  test('rejects a worker allocation past it', async () => {
    await settle();
    manager.setGlobalMemoryLimit(manager.getGlobalMemoryUsage() + 8192);
    const worker = startWorker(
      `${PRELUDE}
      sessions.registerSession('workers-bounded', { expiryInterval: 0 });
      try {
        sessions.allocate('workers-bounded', 65536);
        parentPort.postMessage({ code: 'none' });
      } catch (error) {
        parentPort.postMessage({ code: error.code, tag: error.tag });
      }`,
    );
    const result = await nextMessage<{ code: string; tag: string }>(worker);
    await exited(worker);
    expect(result).toEqual({ code: 'MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED', tag: 'ROOT' });
  });

  test('the thread limit applies to a worker thread', async () => {
    manager.setThreadMemoryLimit(8192);
    const worker = startWorker(
      `${PRELUDE}
      sessions.registerSession('workers-thread-bounded', { expiryInterval: 0 });
      const result = sessions.tryAllocate('workers-thread-bounded', 65536);
      parentPort.postMessage(result === undefined ? 'refused' : 'allocated');`,
    );
    const result = await nextMessage<string>(worker);
    await exited(worker);
    expect(result).toBe('refused');
  });
});

describe('ids held by another thread', () => {
  test('a worker registering a main-thread id throws MQ_ERR_ALLOCATOR_CREATE', async () => {
    sessions.registerSession('workers-held', { expiryInterval: 0 });
    const worker = startWorker(
      `${PRELUDE}
      try {
        sessions.registerSession('workers-held');
        parentPort.postMessage({ code: 'none' });
      } catch (error) {
        parentPort.postMessage({ code: error.code, errno: error.errno, clientId: error.clientId });
      }`,
    );
    const result = await nextMessage(worker);
    await exited(worker);
    sessions.sessionAllocators.cleanupSessionAllocators('workers-held');
    expect(result).toEqual({ code: 'MQ_ERR_ALLOCATOR_CREATE', errno: -701, clientId: 'workers-held' });
  });

  describe('held by a live worker', () => {
    let worker: ReturnType<typeof startWorker>;

    beforeAll(async () => {
      worker = startWorker(
        `${PRELUDE}
        sessions.registerSession('workers-owned', { expiryInterval: 3600 });
        sessions.registerSession('workers-expired', { expiryInterval: 0 });
        sessions.unregisterSession('workers-expired');
        sessions.registerSession('workers-waiting', { expiryInterval: 3600 });
        sessions.unregisterSession('workers-waiting');
        globalThis.kept = sessions.allocate('workers-owned', 1000);
        parentPort.postMessage('ready');
        parentPort.once('message', () => process.exit(0));`,
      );
      await nextMessage(worker);
    });

    afterAll(async () => {
      const done = exited(worker);
      worker.postMessage('stop');
      await done;
      sessions.sessionAllocators.cleanupSessionAllocators('workers-expired');
      sessions.sessionAllocators.cleanupSessionAllocators('workers-owned');
    });

    test('registering a connected id throws MQ_ERR_ALLOCATOR_CREATE', () => {
      expect(thrown(() => sessions.registerSession('workers-owned')).code).toBe('MQ_ERR_ALLOCATOR_CREATE');
    });

    test('the rejection names the client', () => {
      expect(thrown(() => sessions.registerSession('workers-owned')).clientId).toBe('workers-owned');
    });

    test('registering an id waiting to expire throws MQ_ERR_ALLOCATOR_CREATE', () => {
      expect(thrown(() => sessions.registerSession('workers-waiting')).code).toBe('MQ_ERR_ALLOCATOR_CREATE');
    });

    test('the rejection leaves usage unchanged', () => {
      const before = manager.getClientMemoryUsage().get('workers-owned');
      thrown(() => sessions.registerSession('workers-owned'));
      expect(manager.getClientMemoryUsage().get('workers-owned')).toBe(before);
    });

    test('an expired id of another thread can be taken over', () => {
      expect(sessions.registerSession('workers-expired', { expiryInterval: 0 }).resumed).toBe(false);
    });

    test('the main thread cannot unregister it', () => {
      expect(thrown(() => sessions.unregisterSession('workers-owned')).code).toBe('MQ_ERR_ALLOCATOR_NOT_FOUND');
    });

    test('the main thread cannot allocate for it', () => {
      expect(thrown(() => sessions.allocate('workers-owned', 10)).code).toBe('MQ_ERR_ALLOCATOR_NOT_FOUND');
    });

    test('the main thread cannot clean it up', () => {
      expect(sessions.sessionAllocators.cleanupSessionAllocators('workers-owned')).toBe(false);
    });
  });

  test('an id is free again once its worker has exited', async () => {
    const worker = startWorker(`${PRELUDE} sessions.registerSession('workers-released', { expiryInterval: 3600 });`);
    await exited(worker);
    expect(sessions.registerSession('workers-released', { expiryInterval: 0 }).resumed).toBe(false);
    sessions.sessionAllocators.cleanupSessionAllocators('workers-released');
  });
});

describe('thread teardown with live buffers', () => {
  const HOLDER = `${PRELUDE}
    const id = workerData.clientId;
    sessions.registerSession(id, { expiryInterval: 3600 });
    globalThis.kept = [];
    for (let i = 0; i < 20; i++) globalThis.kept.push(sessions.allocate(id, 65536, ['session', 'queue', 'worker'][i % 3]));
    for (let i = 0; i < 5; i++) globalThis.kept.push(sessions.allocateCache(32768));
    const queue = sessions.createSessionQueue(id, { overflow: 'reject' });
    for (let i = 0; i < 10; i++) queue.push(Buffer.alloc(10000, i));
    globalThis.queue = queue;
    parentPort.postMessage(manager.getGlobalMemoryUsage());
  `;

  let baseline: number;

  beforeEach(async () => {
    await settle();
    baseline = manager.getGlobalMemoryUsage();
  });

  test('terminate() returns usage to where it was', async () => {
    const worker = startWorker(`${HOLDER} setInterval(() => {}, 1000);`, { clientId: 'workers-terminated' });
    const during = await nextMessage<number>(worker);
    const done = exited(worker);
    await worker.terminate();
    await done;
    expect([during >= baseline + 20 * 65536, manager.getGlobalMemoryUsage()]).toEqual([true, baseline]);
  });

  test('terminate() removes the worker’s client', async () => {
    const worker = startWorker(`${HOLDER} setInterval(() => {}, 1000);`, { clientId: 'workers-terminated-2' });
    await nextMessage(worker);
    const done = exited(worker);
    await worker.terminate();
    await done;
    expect(manager.getClientMemoryUsage().has('workers-terminated-2')).toBe(false);
  });

  test('terminate() returns the message cache usage', async () => {
    const before = manager.getTagUsage().MESSAGE_CACHE;
    const worker = startWorker(`${HOLDER} setInterval(() => {}, 1000);`, { clientId: 'workers-terminated-3' });
    await nextMessage(worker);
    const done = exited(worker);
    await worker.terminate();
    await done;
    expect(manager.getTagUsage().MESSAGE_CACHE).toBe(before);
  });

  test('terminate() during an allocation loop returns usage', async () => {
    const worker = startWorker(
      `${PRELUDE}
      sessions.registerSession('workers-busy', { expiryInterval: 3600 });
      const kept = [];
      parentPort.postMessage('started');
      for (let i = 0; ; i++) {
        kept.push(sessions.allocate('workers-busy', 1024));
        if (kept.length > 500) sessions.release(kept.shift());
      }`,
    );
    await nextMessage(worker);
    const done = exited(worker);
    await worker.terminate();
    await done;
    expect(manager.getGlobalMemoryUsage()).toBe(baseline);
  });

  test('a natural exit returns usage to where it was', async () => {
    const worker = startWorker(HOLDER, { clientId: 'workers-natural' });
    const done = exited(worker);
    const during = await nextMessage<number>(worker);
    await done;
    expect([during >= baseline + 20 * 65536, manager.getGlobalMemoryUsage()]).toEqual([true, baseline]);
  });

  test('a natural exit returns the thread’s allocator', async () => {
    const threadsBefore = manager.getAllocatorHierarchy().children.length;
    const worker = startWorker(HOLDER, { clientId: 'workers-natural-2' });
    await exited(worker);
    expect(manager.getAllocatorHierarchy().children).toHaveLength(threadsBefore);
  });

  test('process.exit() in a worker returns usage to where it was', async () => {
    const worker = startWorker(`${HOLDER} process.exit(0);`, { clientId: 'workers-exit' });
    const code = await exited(worker);
    expect([code, manager.getGlobalMemoryUsage()]).toEqual([0, baseline]);
  });

  test('a worker that throws returns usage to where it was', async () => {
    const worker = startWorker(`${HOLDER} throw new Error('worker failed on purpose');`, { clientId: 'workers-throw' });
    const failed = await exited(worker).then(
      () => 'exited',
      (error: Error) => error.message,
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect([failed, manager.getGlobalMemoryUsage()]).toEqual(['worker failed on purpose', baseline]);
  });

  test('ending worker frees each buffer once', async () => {
    const worker = startWorker(
      `${PRELUDE}
      sessions.registerSession('workers-gc', { expiryInterval: 0 });
      for (let i = 0; i < 200; i++) sessions.allocate('workers-gc', 4096);
      sessions.release(sessions.allocate('workers-gc', 4096));
      setTimeout(() => parentPort.postMessage(sessions.getMemoryStatistics().liveBuffers), 20);`,
    );
    await nextMessage(worker);
    await exited(worker);
    expect(manager.getGlobalMemoryUsage()).toBe(baseline);
  });
});

describe('postMessage of a session buffer', () => {
  const CLIENT = 'workers-post';
  let buffer: Buffer;

  beforeAll(() => {
    sessions.registerSession(CLIENT, { expiryInterval: 0 });
  });

  beforeEach(() => {
    buffer = sessions.allocate(CLIENT, 256).fill(0x42);
  });

  afterEach(() => {
    if (sessions.isSessionBuffer(buffer)) sessions.release(buffer);
  });

  afterAll(() => {
    sessions.sessionAllocators.cleanupSessionAllocators(CLIENT);
  });

  function roundTrip(send: (port: MessageChannel['port1']) => void): Promise<Uint8Array> {
    const { port1, port2 } = new MessageChannel();
    return new Promise<Uint8Array>((resolve) => {
      port2.once('message', (message: Uint8Array) => {
        port1.close();
        resolve(message);
      });
      send(port1);
    });
  }

  test('without a transfer list the receiver gets a copy', async () => {
    const received = await roundTrip((port) => port.postMessage(buffer));
    expect(Buffer.from(received).equals(Buffer.alloc(256, 0x42))).toBe(true);
  });

  test('without a transfer list the original stays a live session buffer', async () => {
    await roundTrip((port) => port.postMessage(buffer));
    expect(sessions.isSessionBuffer(buffer)).toBe(true);
  });

  test('without a transfer list accounting is unchanged', async () => {
    const before = sessions.getSessionMemoryUsage(CLIENT);
    await roundTrip((port) => port.postMessage(buffer));
    expect(sessions.getSessionMemoryUsage(CLIENT)).toBe(before);
  });

  test('the copy does not share memory with the original', async () => {
    const received = await roundTrip((port) => port.postMessage(buffer));
    buffer.fill(0);
    expect(received[0]).toBe(0x42);
  });

  if (nodeMajor >= 21) {
    test('in the transfer list it throws DataCloneError', () => {
      const { port1 } = new MessageChannel();
      let name = 'none';
      try {
        port1.postMessage(buffer, [buffer.buffer as ArrayBuffer]);
      } catch (error) {
        name = (error as Error).name;
      }
      port1.close();
      expect(name).toBe('DataCloneError');
    });
  } else {
    test('in the transfer list it is copied', async () => {
      const received = await roundTrip((port) => port.postMessage(buffer, [buffer.buffer as ArrayBuffer]));
      expect(received.length).toBe(256);
    });
  }

  test('in the transfer list the original stays intact', async () => {
    const { port1, port2 } = new MessageChannel();
    try {
      port1.postMessage(buffer, [buffer.buffer as ArrayBuffer]);
    } catch {
      // Node 21 and later refuse to transfer external memory.
    }
    port1.close();
    port2.close();
    expect([buffer.length, buffer[255]]).toEqual([256, 0x42]);
  });

  test('in the transfer list accounting is unchanged', () => {
    const before = sessions.getSessionMemoryUsage(CLIENT);
    const { port1, port2 } = new MessageChannel();
    try {
      port1.postMessage(buffer, [buffer.buffer as ArrayBuffer]);
    } catch {
      // Node 21 and later refuse to transfer external memory.
    }
    port1.close();
    port2.close();
    expect(sessions.getSessionMemoryUsage(CLIENT)).toBe(before);
  });

  test('after a transfer attempt the buffer can still be released once', () => {
    const { port1, port2 } = new MessageChannel();
    try {
      port1.postMessage(buffer, [buffer.buffer as ArrayBuffer]);
    } catch {
      // Node 21 and later refuse to transfer external memory.
    }
    port1.close();
    port2.close();
    const before = sessions.getSessionMemoryUsage(CLIENT);
    sessions.release(buffer);
    expect(before - sessions.getSessionMemoryUsage(CLIENT)).toBeGreaterThanOrEqual(256);
  });

  test('a worker posting its buffer to the main thread keeps its accounting', async () => {
    const worker = startWorker(
      `${PRELUDE}
      sessions.registerSession('workers-poster', { expiryInterval: 0 });
      const buffer = sessions.allocate('workers-poster', 512).fill(7);
      const before = sessions.getSessionMemoryUsage('workers-poster');
      parentPort.postMessage(buffer);
      let transfer = 'copied';
      try {
        parentPort.postMessage(buffer, [buffer.buffer]);
      } catch (error) {
        transfer = error.name;
      }
      parentPort.postMessage({
        transfer,
        unchanged: sessions.getSessionMemoryUsage('workers-poster') === before,
        length: buffer.length,
        live: sessions.isSessionBuffer(buffer),
      });`,
    );
    const messages: unknown[] = [];
    worker.on('message', (message) => messages.push(message));
    await exited(worker);
    const report = messages[messages.length - 1];
    expect(report).toEqual({
      transfer: nodeMajor >= 21 ? 'DataCloneError' : 'copied',
      unchanged: true,
      length: 512,
      live: true,
    });
  });

  test('the main thread receives the worker’s bytes', async () => {
    const worker = startWorker(
      `${PRELUDE}
      sessions.registerSession('workers-poster-2', { expiryInterval: 0 });
      parentPort.postMessage(sessions.allocate('workers-poster-2', 64).fill(9));`,
    );
    const received = await nextMessage<Uint8Array>(worker);
    await exited(worker);
    expect(Buffer.from(received).equals(Buffer.alloc(64, 9))).toBe(true);
  });

  test('a received copy is not a session buffer of the main thread', async () => {
    const worker = startWorker(
      `${PRELUDE}
      sessions.registerSession('workers-poster-3', { expiryInterval: 0 });
      parentPort.postMessage(sessions.allocate('workers-poster-3', 64));`,
    );
    const received = await nextMessage<Uint8Array>(worker);
    await exited(worker);
    expect(sessions.isSessionBuffer(received)).toBe(false);
  });
});
