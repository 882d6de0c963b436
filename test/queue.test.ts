// SessionQueue: bounds, overflow policies, copies out, and limits of the
// client's allocators.
import { GlobalSessionManager, SessionQueue } from '../lib';
import { settle, thrown } from './helpers/memory';

const manager = GlobalSessionManager.instance();
const sessions = manager.getThreadManager();
let counter = 0;
const clients: string[] = [];

function client(memoryLimit = 0): string {
  counter += 1;
  const clientId = `queue-${counter}`;
  sessions.registerSession(clientId, { memoryLimit, expiryInterval: 0 });
  clients.push(clientId);
  return clientId;
}

function queueUsage(clientId: string): number {
  return sessions.sessionAllocators.getSessionQueueAllocator(clientId).usage;
}

function payload(text: string, size = 100): Buffer {
  return Buffer.alloc(size, text);
}

/** Returns how many 'limitExceeded' events `action` caused. */
function limitEventsDuring(action: () => void): number {
  let events = 0;
  const onLimit = (): void => {
    events += 1;
  };
  manager.on('limitExceeded', onLimit);
  try {
    action();
  } finally {
    manager.off('limitExceeded', onLimit);
  }
  return events;
}

/** Drains the queue into the first byte of each payload, as characters. */
function drain(queue: SessionQueue): string {
  let text = '';
  for (let item = queue.shift(); item !== undefined; item = queue.shift()) text += String.fromCharCode(item[0]);
  return text;
}

afterAll(async () => {
  await settle();
  for (const clientId of clients) sessions.sessionAllocators.cleanupSessionAllocators(clientId);
});

describe('push and shift', () => {
  test('push returns true when stored', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    expect(queue.push(payload('a'))).toBe(true);
  });

  test('shift returns payloads in FIFO order', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    for (const text of 'abcde') queue.push(payload(text));
    expect(drain(queue)).toBe('abcde');
  });

  test('shift returns the payload bytes', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    queue.push(Buffer.from('hello queue'));
    expect(queue.shift()?.toString()).toBe('hello queue');
  });

  test('push copies the payload', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    const source = Buffer.from('before');
    queue.push(source);
    source.write('AFTER!');
    expect(queue.shift()?.toString()).toBe('before');
  });

  test('accepts a string', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    queue.push('text payload');
    expect(queue.shift()?.toString()).toBe('text payload');
  });

  test('accepts a Uint8Array', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    queue.push(new Uint8Array([1, 2, 3]));
    expect([...(queue.shift() ?? [])]).toEqual([1, 2, 3]);
  });

  test('accepts an empty payload', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    queue.push(Buffer.alloc(0));
    expect(queue.shift()?.length).toBe(0);
  });

  test('shift of an empty queue returns undefined', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    expect(queue.shift()).toBeUndefined();
  });

  test('shift returns a plain Buffer, not a session buffer', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    queue.push(payload('a'));
    expect(sessions.isSessionBuffer(queue.shift())).toBe(false);
  });

  test.each([1, 100, 1024, 4096, 16 * 1024, 32 * 1024, 32 * 1024 + 8, 64 * 1024, 300 * 1024])(
    'a shifted payload of %i bytes keeps at most 64 times its size or 8 KiB reachable',
    (size) => {
      const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
      for (let i = 0; i < 3; i++) queue.push(Buffer.alloc(size, 65 + i));
      const items = [queue.shift(), queue.shift(), queue.shift()] as Buffer[];

      for (const [i, item] of items.entries()) {
        expect(item.length).toBe(size);
        expect(item.buffer.byteLength).toBeLessThanOrEqual(Math.max(64 * size, 8 * 1024));
        if (size > 32 * 1024) expect(item.buffer.byteLength).toBe(size);
        expect(item.every((byte) => byte === 65 + i)).toBe(true);
      }
      // Parts of one slab never overlap.
      items[0].fill(0);
      expect(items[1].every((byte) => byte === 66)).toBe(true);
      expect(items[2].every((byte) => byte === 67)).toBe(true);
    },
  );

  test('shifted Buffer outlives clear()', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    queue.push(Buffer.from('keep me'));
    const item = queue.shift();
    queue.push(Buffer.from('other'));
    queue.clear();
    expect(item?.toString()).toBe('keep me');
  });

  test('push charges the queue allocator', () => {
    const clientId = client();
    const queue = sessions.createSessionQueue(clientId, { overflow: 'reject' });
    queue.push(payload('a', 5000));
    expect(queueUsage(clientId)).toBeGreaterThanOrEqual(5000);
  });

  test('shift uncharges at once', () => {
    const clientId = client();
    const queue = sessions.createSessionQueue(clientId, { overflow: 'reject' });
    queue.push(payload('a', 5000));
    queue.shift();
    expect(queueUsage(clientId)).toBe(0);
  });

  test('length counts payloads', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    queue.push(payload('a'));
    queue.push(payload('b'));
    expect(queue.length).toBe(2);
  });

  test('bytes counts payload bytes', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    queue.push(payload('a', 30));
    queue.push(payload('b', 70));
    expect(queue.bytes).toBe(100);
  });

  test('peek returns the oldest without removing it', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    queue.push(payload('a'));
    queue.push(payload('b'));
    queue.peek();
    expect(queue.length).toBe(2);
  });

  test('many payloads keep FIFO order across compaction', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    const out: number[] = [];
    for (let i = 0; i < 3000; i++) {
      queue.push(Buffer.from([i & 0xff, i >> 8]));
      if (i % 3 === 0) out.push(queue.shift()?.readUInt16LE(0) ?? -1);
    }
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) out.push(item.readUInt16LE(0));
    expect(out).toEqual(Array.from({ length: 3000 }, (_v, i) => i));
  });

  test('a queue for an unknown client throws MQ_ERR_ALLOCATOR_NOT_FOUND', () => {
    expect(() => sessions.createSessionQueue('queue-unknown', { overflow: 'reject' })).toThrow(
      expect.objectContaining({ code: 'MQ_ERR_ALLOCATOR_NOT_FOUND' }),
    );
  });
});

describe('clear', () => {
  test('empties the queue', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    for (const text of 'abc') queue.push(payload(text));
    queue.clear();
    expect(queue.length).toBe(0);
  });

  test('zeroes bytes', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    for (const text of 'abc') queue.push(payload(text));
    queue.clear();
    expect(queue.bytes).toBe(0);
  });

  test('uncharges the queue allocator', () => {
    const clientId = client();
    const queue = sessions.createSessionQueue(clientId, { overflow: 'reject' });
    for (const text of 'abc') queue.push(payload(text, 4000));
    queue.clear();
    expect(queueUsage(clientId)).toBe(0);
  });

  test('the queue takes new payloads afterwards', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject', maxMessages: 1 });
    queue.push(payload('a'));
    queue.clear();
    expect(queue.push(payload('b'))).toBe(true);
  });
});

describe("overflow 'reject'", () => {
  test('invalid maxMessages named as a message count', () => {
    const error = thrown(() => sessions.createSessionQueue(client(), { overflow: 'reject', maxMessages: -1 }));
    expect(error.code).toBe('MQ_ERR_INVALID_ARGS');
    expect(error.message).toContain('maxMessages');
    expect(error.message).toContain('number of messages');
  });

  test('maxMessages rejects the next payload', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject', maxMessages: 2 });
    queue.push(payload('a'));
    queue.push(payload('b'));
    expect(queue.push(payload('c'))).toBe(false);
  });

  test('maxMessages keeps the stored payloads', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject', maxMessages: 2 });
    for (const text of 'abc') queue.push(payload(text));
    expect(drain(queue)).toBe('ab');
  });

  test('maxBytes admits payloads up to the bound exactly', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject', maxBytes: 300 });
    queue.push(payload('a'));
    queue.push(payload('b'));
    expect(queue.push(payload('c'))).toBe(true);
  });

  test('maxBytes rejects one byte more', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject', maxBytes: 300 });
    for (const text of 'abc') queue.push(payload(text));
    expect(queue.push(payload('d', 1))).toBe(false);
  });

  test('a rejected payload charges nothing', () => {
    const clientId = client();
    const queue = sessions.createSessionQueue(clientId, { overflow: 'reject', maxBytes: 100 });
    queue.push(payload('a'));
    const usage = queueUsage(clientId);
    queue.push(payload('b'));
    expect(queueUsage(clientId)).toBe(usage);
  });

  test('oversized payload rejected when empty', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject', maxBytes: 100 });
    expect(queue.push(payload('a', 101))).toBe(false);
  });

  test('room made by shift is usable again', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject', maxMessages: 1 });
    queue.push(payload('a'));
    queue.shift();
    expect(queue.push(payload('b'))).toBe(true);
  });

  test('never emits drop', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject', maxMessages: 1 });
    const drops: Buffer[] = [];
    queue.on('drop', (dropped) => drops.push(dropped));
    for (const text of 'abc') queue.push(payload(text));
    expect(drops).toHaveLength(0);
  });
});

describe("overflow 'drop-oldest'", () => {
  test('maxMessages stores the new payload', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'drop-oldest', maxMessages: 2 });
    queue.push(payload('a'));
    queue.push(payload('b'));
    expect(queue.push(payload('c'))).toBe(true);
  });

  test('maxMessages keeps the newest payloads', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'drop-oldest', maxMessages: 2 });
    for (const text of 'abcd') queue.push(payload(text));
    expect(drain(queue)).toBe('cd');
  });

  test('emits drop for each dropped payload, oldest first', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'drop-oldest', maxMessages: 2 });
    const drops: string[] = [];
    queue.on('drop', (dropped) => drops.push(String.fromCharCode(dropped[0])));
    for (const text of 'abcd') queue.push(payload(text));
    expect(drops).toEqual(['a', 'b']);
  });

  test('drops are counted with or without a listener', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'drop-oldest', maxMessages: 2 });
    const before = manager.getQueueDrops();
    for (const text of 'abcd') queue.push(payload(text));
    expect(manager.getQueueDrops()).toBe(before + 2);

    queue.on('drop', () => undefined);
    queue.push(payload('e'));
    expect(manager.getQueueDrops()).toBe(before + 3);
  });

  test('shift and clear are not counted as drops', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'drop-oldest', maxMessages: 3 });
    const before = manager.getQueueDrops();
    for (const text of 'abc') queue.push(payload(text));
    queue.shift();
    queue.clear();
    expect(manager.getQueueDrops()).toBe(before);
  });

  test('a dropped payload is a plain Buffer the listener owns', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'drop-oldest', maxMessages: 1 });
    const drops: Buffer[] = [];
    queue.on('drop', (dropped) => drops.push(dropped));
    queue.push(Buffer.from('first'));
    queue.push(Buffer.from('second'));
    expect(sessions.isSessionBuffer(drops[0])).toBe(false);
  });

  test('a dropped payload keeps its bytes', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'drop-oldest', maxMessages: 1 });
    const drops: Buffer[] = [];
    queue.on('drop', (dropped) => drops.push(dropped));
    queue.push(Buffer.from('first'));
    queue.push(Buffer.from('second'));
    expect(drops[0].toString()).toBe('first');
  });

  test('maxBytes drops as many as needed', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'drop-oldest', maxBytes: 300 });
    const drops: string[] = [];
    queue.on('drop', (dropped) => drops.push(String.fromCharCode(dropped[0])));
    for (const text of 'abc') queue.push(payload(text));
    queue.push(payload('d', 250));
    expect(drops).toEqual(['a', 'b', 'c']);
  });

  test('maxBytes keeps bytes within the bound', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'drop-oldest', maxBytes: 300 });
    for (let i = 0; i < 50; i++) queue.push(payload('x', 1 + ((i * 37) % 120)));
    expect(queue.bytes).toBeLessThanOrEqual(300);
  });

  test('dropping uncharges the queue allocator', () => {
    const clientId = client();
    const queue = sessions.createSessionQueue(clientId, { overflow: 'drop-oldest', maxMessages: 1 });
    queue.push(payload('a', 4000));
    const usage = queueUsage(clientId);
    for (const text of 'bcdefg') queue.push(payload(text, 4000));
    expect(queueUsage(clientId)).toBe(usage);
  });

  test('payload over client limit drops nothing', () => {
    const queue = sessions.createSessionQueue(client(4096), { overflow: 'drop-oldest' });
    const dropped: Buffer[] = [];
    queue.on('drop', (payloadCopy) => dropped.push(payloadCopy));
    queue.push(payload('a', 1000));
    queue.push(payload('b', 1000));

    expect(queue.push(payload('c', 10000))).toBe(false);
    expect(queue.length).toBe(2);
    expect(dropped).toHaveLength(0);
  });

  test('payload fitting after drops is stored', () => {
    const queue = sessions.createSessionQueue(client(4096), { overflow: 'drop-oldest' });
    queue.push(payload('a', 1500));
    queue.push(payload('b', 1500));

    expect(queue.push(payload('c', 1500))).toBe(true);
    expect(queue.length).toBe(2);
    expect(queue.shift()?.[0]).toBe('b'.charCodeAt(0));
  });

  test('payload charged past the limit drops nothing', () => {
    const clientId = client(10000);
    const queue = sessions.createSessionQueue(clientId, { overflow: 'drop-oldest' });
    const dropped: Buffer[] = [];
    queue.on('drop', (payloadCopy) => dropped.push(payloadCopy));
    for (let i = 0; i < 5; i += 1) queue.push(payload('a', 100));
    // 10000 bytes pass the limit as requested, but not as the backend charges them.
    expect(sessions.tryAllocate(clientId, 10000, 'queue')).toBeUndefined();

    expect(queue.push(payload('z', 10000))).toBe(false);
    expect(queue.length).toBe(5);
    expect(dropped).toHaveLength(0);
  });

  test('payload that never fits counts one violation', () => {
    const queue = sessions.createSessionQueue(client(10000), { overflow: 'drop-oldest' });
    queue.push(payload('a', 100));
    let pushed: boolean | undefined;

    const events = limitEventsDuring(() => {
      pushed = queue.push(payload('z', 10000));
    });

    expect(pushed).toBe(false);
    expect(events).toBe(1);
  });

  test('maxBytes near the limit drops nothing', () => {
    const clientId = client(2000);
    const queue = sessions.createSessionQueue(clientId, { overflow: 'drop-oldest', maxBytes: 1999 });
    queue.push(payload('a', 300));
    queue.push(payload('b', 300));
    // Both backends charge more than 2000 bytes for 1999.
    expect(sessions.tryAllocate(clientId, 1999, 'queue')).toBeUndefined();

    expect(queue.push(payload('z', 1999))).toBe(false);
    expect(queue.length).toBe(2);
  });

  test('drops that make room count no violation', () => {
    const queue = sessions.createSessionQueue(client(4096), { overflow: 'drop-oldest' });
    queue.push(payload('a', 1500));
    queue.push(payload('b', 1500));
    const violations = manager.getLimitViolations();
    let pushed: boolean | undefined;

    const events = limitEventsDuring(() => {
      pushed = queue.push(payload('c', 1500));
    });

    expect(pushed).toBe(true);
    expect(queue.length).toBe(2);
    expect(events).toBe(0);
    expect(manager.getLimitViolations()).toEqual(violations);
  });

  test('oversized payload drops nothing', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'drop-oldest', maxBytes: 100 });
    queue.push(payload('a', 50));
    queue.push(payload('b', 101));
    expect(queue.length).toBe(1);
  });
});

describe('allocator limits', () => {
  test("a push past the client's limit returns false", () => {
    const queue = sessions.createSessionQueue(client(2048), { overflow: 'reject' });
    queue.push(payload('a', 1000));
    queue.push(payload('b', 1000));
    expect(queue.push(payload('c', 1000))).toBe(false);
  });

  test("a push past the client's limit keeps the queue", () => {
    const queue = sessions.createSessionQueue(client(2048), { overflow: 'reject' });
    for (const text of 'abc') queue.push(payload(text, 1000));
    expect(queue.length).toBe(2);
  });

  test("a push past the client's limit does not throw", () => {
    const queue = sessions.createSessionQueue(client(1024), { overflow: 'reject' });
    expect(() => queue.push(payload('a', 5000))).not.toThrow();
  });

  test('limit rejection emits limitExceeded', () => {
    const clientId = client(1024);
    const queue = sessions.createSessionQueue(clientId, { overflow: 'reject' });
    const events: Array<string | undefined> = [];
    const listener = (event: { clientId?: string }): void => {
      events.push(event.clientId);
    };
    manager.on('limitExceeded', listener);
    queue.push(payload('a', 5000));
    manager.off('limitExceeded', listener);
    expect(events).toEqual([clientId]);
  });

  test('session allocations leave less room for the queue', () => {
    const clientId = client(4096);
    const held = sessions.allocate(clientId, 3500);
    const queue = sessions.createSessionQueue(clientId, { overflow: 'reject' });
    expect(queue.push(payload('a', 1000))).toBe(false);
    sessions.release(held);
  });

  test("'drop-oldest' drops to make room under the client's limit", () => {
    const queue = sessions.createSessionQueue(client(2048), { overflow: 'drop-oldest' });
    for (const text of 'abcd') queue.push(payload(text, 1000));
    expect(drain(queue)).toBe('cd');
  });

  test('the global limit rejects a push', () => {
    const queue = sessions.createSessionQueue(client(), { overflow: 'reject' });
    manager.setGlobalMemoryLimit(manager.getGlobalMemoryUsage() + 1024);
    try {
      expect(queue.push(payload('a', 4096))).toBe(false);
    } finally {
      manager.setGlobalMemoryLimit(0);
    }
  });

  test('removed session: push throws NOT_FOUND', () => {
    const clientId = client();
    const queue = sessions.createSessionQueue(clientId, { overflow: 'reject' });
    sessions.sessionAllocators.cleanupSessionAllocators(clientId);
    expect(() => queue.push(payload('a'))).toThrow(expect.objectContaining({ code: 'MQ_ERR_ALLOCATOR_NOT_FOUND' }));
  });

  test('removed session: shift still works', () => {
    const clientId = client();
    const queue = sessions.createSessionQueue(clientId, { overflow: 'reject' });
    queue.push(Buffer.from('survivor'));
    sessions.sessionAllocators.cleanupSessionAllocators(clientId);
    expect(queue.shift()?.toString()).toBe('survivor');
  });
});

describe('garbage collection', () => {
  test('a dropped queue is uncharged after GC', async () => {
    const clientId = client();
    ((): void => {
      const queue = sessions.createSessionQueue(clientId, { overflow: 'reject' });
      for (let i = 0; i < 20; i++) queue.push(payload('z', 2000));
    })();
    await settle();
    expect(queueUsage(clientId)).toBe(0);
  });
});

describe('lifetime', () => {
  test('collected queue frees its payloads', async () => {
    const clientId = client();
    let queue: SessionQueue | undefined = sessions.createSessionQueue(clientId, { overflow: 'reject' });
    for (const text of 'abc') queue.push(payload(text, 3000));
    expect(queueUsage(clientId)).toBeGreaterThanOrEqual(9000);

    queue = undefined;
    await settle();

    expect(queueUsage(clientId)).toBe(0);
  });

  test('shift after session re-registration', () => {
    const clientId = client();
    const queue = sessions.createSessionQueue(clientId, { overflow: 'reject' });
    queue.push(payload('a', 500));
    sessions.sessionAllocators.cleanupSessionAllocators(clientId);
    sessions.registerSession(clientId, { expiryInterval: 0 });

    expect(queue.push(payload('b', 500))).toBe(true);
    expect(queueUsage(clientId)).toBeGreaterThanOrEqual(500);
    expect(drain(queue)).toBe('ab');
    expect(queueUsage(clientId)).toBe(0);
  });
});
