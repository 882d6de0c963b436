// Session buffers: allocation, release, detaching, foreign buffers, and
// freeing by the garbage collector with the same accounting.
import { GlobalSessionManager, MqttAllocatorError } from '../lib';
import { settle, thrown } from './helpers/memory';

const manager = GlobalSessionManager.instance();
const sessions = manager.getThreadManager();
const CLIENT = 'buffers-client';

function clientUsage(): number {
  return sessions.getSessionMemoryUsage(CLIENT);
}

/** Allocates in a scope of its own, so nothing keeps the buffers reachable. */
function allocateAndDrop(count: number, size: number): void {
  for (let i = 0; i < count; i++) sessions.allocate(CLIENT, size).fill(i & 0xff);
}

beforeAll(() => {
  sessions.registerSession(CLIENT, { memoryLimit: 0, expiryInterval: 0 });
});

afterAll(async () => {
  await settle();
  sessions.sessionAllocators.cleanupSessionAllocators(CLIENT);
});

describe('allocate', () => {
  test('returns a Buffer of the requested length', () => {
    const buffer = sessions.allocate(CLIENT, 300);
    expect(Buffer.isBuffer(buffer)).toBe(true);
    expect(buffer.length).toBe(300);
    sessions.release(buffer);
  });

  test('charges at least the requested bytes', () => {
    const before = clientUsage();
    const buffer = sessions.allocate(CLIENT, 300);
    expect(clientUsage() - before).toBeGreaterThanOrEqual(300);
    sessions.release(buffer);
  });

  test('charges the global root the same bytes as the session', () => {
    const sessionBefore = clientUsage();
    const globalBefore = manager.getGlobalMemoryUsage();
    const buffer = sessions.allocate(CLIENT, 5000);
    expect(manager.getGlobalMemoryUsage() - globalBefore).toBe(clientUsage() - sessionBefore);
    sessions.release(buffer);
  });

  test('memory is writable and readable', () => {
    const buffer = sessions.allocate(CLIENT, 64);
    buffer.write('hello session memory');
    expect(buffer.toString('utf8', 0, 20)).toBe('hello session memory');
    sessions.release(buffer);
  });

  test('is recognised as a session buffer', () => {
    const buffer = sessions.allocate(CLIENT, 8);
    expect(sessions.isSessionBuffer(buffer)).toBe(true);
    sessions.release(buffer);
  });

  test('zero size returns an empty Buffer', () => {
    const buffer = sessions.allocate(CLIENT, 0);
    expect(Buffer.isBuffer(buffer)).toBe(true);
    expect(buffer.length).toBe(0);
    sessions.release(buffer);
  });

  test('zero size can be released once', () => {
    const before = clientUsage();
    const buffer = sessions.allocate(CLIENT, 0);
    sessions.release(buffer);
    expect(clientUsage()).toBe(before);
    expect(thrown(() => sessions.release(buffer)).code).toBe('MQ_ERR_INVALID_ARGS');
  });

  test('zero size is freed by the garbage collector', async () => {
    const before = clientUsage();
    allocateAndDrop(50, 0);
    await settle();
    expect(clientUsage()).toBe(before);
  });
});

describe('components', () => {
  test.each(['session', 'queue', 'worker'] as const)('%s allocation charges the session total', (component) => {
    const before = clientUsage();
    const buffer = sessions.allocate(CLIENT, 700, component);
    expect(clientUsage() - before).toBeGreaterThanOrEqual(700);
    sessions.release(buffer);
    expect(clientUsage()).toBe(before);
  });

  test('queue allocation charges the queue allocator', () => {
    const queue = sessions.sessionAllocators.getSessionQueueAllocator(CLIENT);
    const sessionBefore = clientUsage();
    const queueBefore = queue.usage;
    const buffer = sessions.allocate(CLIENT, 900, 'queue');
    expect(queue.usage - queueBefore).toBe(clientUsage() - sessionBefore);
    sessions.release(buffer);
  });

  test('worker allocation charges the worker allocator', () => {
    const worker = sessions.sessionAllocators.getSessionWorkerAllocator(CLIENT);
    const sessionBefore = clientUsage();
    const workerBefore = worker.usage;
    const buffer = sessions.allocate(CLIENT, 900, 'worker');
    expect(worker.usage - workerBefore).toBe(clientUsage() - sessionBefore);
    sessions.release(buffer);
  });

  test('queue allocation shows in queueUsage only', () => {
    const before = sessions.getMemoryStatistics();
    const buffer = sessions.allocate(CLIENT, 900, 'queue');
    const after = sessions.getMemoryStatistics();
    expect(after.queueUsage - before.queueUsage).toBe(after.totalUsage - before.totalUsage);
    expect(after.sessionUsage).toBe(before.sessionUsage);
    expect(after.workerUsage).toBe(before.workerUsage);
    sessions.release(buffer);
  });
});

describe('allocateCache', () => {
  test('charges the message cache, not the session', () => {
    const cache = sessions.sessionAllocators.getMessageCacheAllocator();
    const cacheBefore = cache.usage;
    const sessionBefore = clientUsage();
    const buffer = sessions.allocateCache(2000);
    expect(cache.usage - cacheBefore).toBeGreaterThanOrEqual(2000);
    expect(clientUsage()).toBe(sessionBefore);
    sessions.release(buffer);
  });

  test('shows in cacheUsage of this thread', () => {
    const before = sessions.getMemoryStatistics().cacheUsage;
    const buffer = sessions.allocateCache(2000);
    expect(sessions.getMemoryStatistics().cacheUsage - before).toBeGreaterThanOrEqual(2000);
    sessions.release(buffer);
    expect(sessions.getMemoryStatistics().cacheUsage).toBe(before);
  });

  test('release returns the global usage', () => {
    const before = manager.getGlobalMemoryUsage();
    const buffer = sessions.allocateCache(4096);
    sessions.release(buffer);
    expect(manager.getGlobalMemoryUsage()).toBe(before);
  });

  test('unreleased cache buffers are freed by the garbage collector', async () => {
    const before = sessions.getMemoryStatistics().cacheUsage;
    for (let i = 0; i < 20; i++) sessions.allocateCache(1000);
    await settle();
    expect(sessions.getMemoryStatistics().cacheUsage).toBe(before);
  });

  test('zero size returns an empty Buffer', () => {
    const buffer = sessions.allocateCache(0);
    expect(buffer.length).toBe(0);
    sessions.release(buffer);
  });
});

describe('release', () => {
  test('session usage drops at once', () => {
    const before = clientUsage();
    const buffer = sessions.allocate(CLIENT, 10_000);
    sessions.release(buffer);
    expect(clientUsage()).toBe(before);
  });

  test('global usage drops at once', () => {
    const before = manager.getGlobalMemoryUsage();
    const buffer = sessions.allocate(CLIENT, 10_000);
    sessions.release(buffer);
    expect(manager.getGlobalMemoryUsage()).toBe(before);
  });

  test('live buffer count drops at once', () => {
    const before = sessions.getMemoryStatistics().liveBuffers;
    const buffer = sessions.allocate(CLIENT, 10);
    sessions.release(buffer);
    expect(sessions.getMemoryStatistics().liveBuffers).toBe(before);
  });

  test('detaches the buffer to length 0', () => {
    const buffer = sessions.allocate(CLIENT, 128);
    sessions.release(buffer);
    expect(buffer.length).toBe(0);
  });

  test('detaches the ArrayBuffer', () => {
    const buffer = sessions.allocate(CLIENT, 128);
    const arrayBuffer = buffer.buffer;
    sessions.release(buffer);
    expect(arrayBuffer.byteLength).toBe(0);
  });

  test('detaches a subarray view', () => {
    const buffer = sessions.allocate(CLIENT, 128);
    const view = buffer.subarray(16, 64);
    sessions.release(buffer);
    expect(view.length).toBe(0);
  });

  test('detaches a Uint8Array over the same memory', () => {
    const buffer = sessions.allocate(CLIENT, 128);
    const view = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.length);
    sessions.release(buffer);
    expect(view.length).toBe(0);
  });

  test('detaches a Uint8Array over the whole ArrayBuffer', () => {
    const buffer = sessions.allocate(CLIENT, 128);
    const view = new Uint8Array(buffer.buffer);
    sessions.release(buffer);
    expect(view.length).toBe(0);
  });

  test('the released buffer is no longer a session buffer', () => {
    const buffer = sessions.allocate(CLIENT, 8);
    sessions.release(buffer);
    expect(sessions.isSessionBuffer(buffer)).toBe(false);
  });

  test('a view of a released buffer reads nothing', () => {
    const buffer = sessions.allocate(CLIENT, 8);
    const view = buffer.subarray(0, 4);
    sessions.release(buffer);
    expect(view[0]).toBeUndefined();
  });
});

describe('release rejected', () => {
  test.each([
    ['a subarray', (buffer: Buffer) => buffer.subarray(100, 200), 'the Buffer has 4096 bytes'],
    ['a tail view', (buffer: Buffer) => Buffer.from(buffer.buffer, 8, buffer.length - 8), 'the Buffer has 4096 bytes'],
    [
      'a DataView of part of it',
      (buffer: Buffer) => new DataView(buffer.buffer, buffer.byteOffset, buffer.length - 1),
      'the Buffer has 4096 bytes',
    ],
    [
      'a Uint16Array of part of it',
      (buffer: Buffer) => new Uint16Array(buffer.buffer, buffer.byteOffset + 2, buffer.length / 2 - 1),
      'the Buffer has 4096 bytes',
    ],
  ])('%s of a live buffer frees nothing', (_name, makeView, message) => {
    const buffer = sessions.allocate(CLIENT, 4096);
    const usage = clientUsage();

    const error = thrown(() => sessions.release(makeView(buffer) as Buffer));

    expect(error.code).toBe('MQ_ERR_INVALID_ARGS');
    expect(error.message).toContain(message);
    expect(clientUsage()).toBe(usage);
    expect(buffer.length).toBe(4096);
    expect(sessions.isSessionBuffer(makeView(buffer))).toBe(false);
    expect(sessions.isSessionBuffer(buffer)).toBe(true);
    sessions.release(buffer);
  });

  test('a full-length view releases the buffer', () => {
    const buffer = sessions.allocate(CLIENT, 256);
    const usage = clientUsage();

    sessions.release(Buffer.from(buffer.buffer, buffer.byteOffset, buffer.length));

    expect(buffer.length).toBe(0);
    expect(clientUsage()).toBeLessThan(usage);
  });

  test.each([
    ['an Int8Array', (buffer: Buffer) => new Int8Array(buffer.buffer, buffer.byteOffset, buffer.length)],
    ['a Uint16Array', (buffer: Buffer) => new Uint16Array(buffer.buffer, buffer.byteOffset, buffer.length / 2)],
    ['a Float64Array', (buffer: Buffer) => new Float64Array(buffer.buffer, buffer.byteOffset, buffer.length / 8)],
    ['a DataView', (buffer: Buffer) => new DataView(buffer.buffer, buffer.byteOffset, buffer.length)],
    ['the ArrayBuffer', (buffer: Buffer) => buffer.buffer],
  ])('%s over all of it releases the buffer', (_name, makeView) => {
    const buffer = sessions.allocate(CLIENT, 256);
    const usage = clientUsage();
    expect(sessions.isSessionBuffer(makeView(buffer))).toBe(true);

    sessions.release(makeView(buffer) as ArrayBufferView | ArrayBuffer);

    expect(buffer.length).toBe(0);
    expect(clientUsage()).toBeLessThan(usage);
    expect(thrown(() => sessions.release(buffer)).message).toContain('already released');
  });

  test('the ArrayBuffer of an empty allocation releases it', () => {
    const buffer = sessions.allocate(CLIENT, 0);
    const usage = clientUsage();

    sessions.release(buffer.buffer as ArrayBuffer);

    expect(clientUsage()).toBeLessThan(usage);
  });

  test('twice throws MQ_ERR_INVALID_ARGS', () => {
    const buffer = sessions.allocate(CLIENT, 64);
    sessions.release(buffer);
    const error = thrown(() => sessions.release(buffer));
    expect(error).toBeInstanceOf(MqttAllocatorError);
    expect(error.code).toBe('MQ_ERR_INVALID_ARGS');
    expect(error.errno).toBe(-800);
  });

  test('twice changes no usage', () => {
    const buffer = sessions.allocate(CLIENT, 64);
    const other = sessions.allocate(CLIENT, 64);
    sessions.release(buffer);
    const sessionBefore = clientUsage();
    const globalBefore = manager.getGlobalMemoryUsage();
    thrown(() => sessions.release(buffer));
    expect(clientUsage()).toBe(sessionBefore);
    expect(manager.getGlobalMemoryUsage()).toBe(globalBefore);
    sessions.release(other);
  });

  test('twice leaves other buffers usable', () => {
    const buffer = sessions.allocate(CLIENT, 64);
    const other = sessions.allocate(CLIENT, 64).fill(7);
    sessions.release(buffer);
    thrown(() => sessions.release(buffer));
    expect(other.every((byte) => byte === 7)).toBe(true);
    sessions.release(other);
  });

  const foreign: Array<[string, () => unknown]> = [
    ['Buffer.alloc', () => Buffer.alloc(64)],
    ['Buffer.allocUnsafe (pooled)', () => Buffer.allocUnsafe(16)],
    ['Uint8Array', () => new Uint8Array(64)],
    ['Float64Array', () => new Float64Array(8)],
    ['ArrayBuffer', () => new ArrayBuffer(64)],
    ['plain object', () => ({ length: 64 })],
    ['string', () => 'not a buffer'],
    ['number', () => 64],
    ['null', () => null],
    ['undefined', () => undefined],
  ];

  test.each(foreign)('%s throws MQ_ERR_INVALID_ARGS', (_name, make) => {
    expect(thrown(() => sessions.release(make() as Buffer)).code).toBe('MQ_ERR_INVALID_ARGS');
  });

  test.each(foreign)('%s changes no usage', (_name, make) => {
    const live = sessions.allocate(CLIENT, 256);
    const before = manager.getGlobalMemoryUsage();
    thrown(() => sessions.release(make() as Buffer));
    expect(manager.getGlobalMemoryUsage()).toBe(before);
    sessions.release(live);
  });

  test('a copy of a session buffer throws MQ_ERR_INVALID_ARGS', () => {
    const buffer = sessions.allocate(CLIENT, 32);
    const copy = Buffer.from(buffer);
    expect(thrown(() => sessions.release(copy)).code).toBe('MQ_ERR_INVALID_ARGS');
    sessions.release(buffer);
  });

  test('a copy of a session buffer leaves the original live', () => {
    const buffer = sessions.allocate(CLIENT, 32).fill(3);
    thrown(() => sessions.release(Buffer.from(buffer)));
    expect(buffer.length).toBe(32);
    sessions.release(buffer);
  });
});

describe('garbage collection', () => {
  test('unreleased buffers are freed with the same accounting', async () => {
    await settle();
    const before = clientUsage();
    allocateAndDrop(200, 1500);
    expect(clientUsage()).toBeGreaterThan(before);
    await settle();
    expect(clientUsage()).toBe(before);
  });

  test('global usage returns to its baseline', async () => {
    await settle();
    const before = manager.getGlobalMemoryUsage();
    allocateAndDrop(100, 4096);
    await settle();
    expect(manager.getGlobalMemoryUsage()).toBe(before);
  });

  test('live buffer count returns to its baseline', async () => {
    await settle();
    const before = sessions.getMemoryStatistics().liveBuffers;
    allocateAndDrop(100, 64);
    await settle();
    expect(sessions.getMemoryStatistics().liveBuffers).toBe(before);
  });

  test('each component is uncharged', async () => {
    await settle();
    const before = sessions.getMemoryStatistics();
    for (const component of ['session', 'queue', 'worker'] as const) {
      for (let i = 0; i < 10; i++) sessions.allocate(CLIENT, 333, component);
    }
    await settle();
    const after = sessions.getMemoryStatistics();
    expect(after.sessionUsage).toBe(before.sessionUsage);
    expect(after.queueUsage).toBe(before.queueUsage);
    expect(after.workerUsage).toBe(before.workerUsage);
  });

  test('a live view keeps the memory charged', async () => {
    await settle();
    const before = clientUsage();
    let view: Uint8Array | undefined = ((): Uint8Array => sessions.allocate(CLIENT, 2048).subarray(0, 8))();
    await settle();
    expect(clientUsage()).toBeGreaterThan(before);
    view.fill(1);
    view = undefined;
    await settle();
    expect(clientUsage()).toBe(before);
  });

  test('release then GC frees nothing twice', async () => {
    await settle();
    const sessionBefore = clientUsage();
    const globalBefore = manager.getGlobalMemoryUsage();
    ((): void => {
      for (let i = 0; i < 50; i++) sessions.release(sessions.allocate(CLIENT, 800));
    })();
    await settle();
    expect(clientUsage()).toBe(sessionBefore);
    expect(manager.getGlobalMemoryUsage()).toBe(globalBefore);
  });

  test('release then GC keeps tag usage unchanged', async () => {
    await settle();
    const before = manager.getTagUsage().SESSION;
    ((): void => {
      for (let i = 0; i < 50; i++) sessions.release(sessions.allocate(CLIENT, 800));
    })();
    await settle();
    expect(manager.getTagUsage().SESSION).toBe(before);
  });
});
