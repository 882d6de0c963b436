// Session lifecycle (register, resume, unregister, expiry, cleanup) and
// client ids that look alike or hostile.
import { GlobalSessionManager } from '../lib';
import { settle, thrown } from './helpers/memory';

const manager = GlobalSessionManager.instance();
const sessions = manager.getThreadManager();
const registered = new Set<string>();
let counter = 0;

function fresh(): string {
  counter += 1;
  return `sessions-${counter}`;
}

function register(clientId: string, options: { memoryLimit?: number; expiryInterval?: number } = {}): boolean {
  registered.add(clientId);
  return sessions.registerSession(clientId, { expiryInterval: 0, ...options }).resumed;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

afterAll(async () => {
  await settle();
  for (const clientId of registered) sessions.sessionAllocators.cleanupSessionAllocators(clientId);
});

describe('registerSession', () => {
  test('a new id is not resumed', () => {
    expect(register(fresh())).toBe(false);
  });

  test('the same id again is resumed', () => {
    const clientId = fresh();
    register(clientId);
    expect(register(clientId)).toBe(true);
  });

  test('returns the client id', () => {
    const clientId = fresh();
    registered.add(clientId);
    expect(sessions.registerSession(clientId).clientId).toBe(clientId);
  });

  test('returns the limit in effect', () => {
    const clientId = fresh();
    registered.add(clientId);
    expect(sessions.registerSession(clientId, { memoryLimit: 5555 }).limit).toBe(5555);
  });

  test('resume applies a new memory limit', () => {
    const clientId = fresh();
    register(clientId, { memoryLimit: 1000 });
    register(clientId, { memoryLimit: 7000 });
    expect(manager.getClientMemoryLimit(clientId)).toBe(7000);
  });

  test('resume without a limit keeps the old one', () => {
    const clientId = fresh();
    register(clientId, { memoryLimit: 1000 });
    sessions.registerSession(clientId);
    expect(manager.getClientMemoryLimit(clientId)).toBe(1000);
  });

  test('resume keeps live buffers charged to the session', () => {
    const clientId = fresh();
    register(clientId);
    const buffer = sessions.allocate(clientId, 2000);
    const usage = sessions.getSessionMemoryUsage(clientId);
    register(clientId);
    expect(sessions.getSessionMemoryUsage(clientId)).toBe(usage);
    sessions.release(buffer);
  });

  test('resume cancels a pending expiry', () => {
    const clientId = fresh();
    register(clientId, { expiryInterval: 0 });
    sessions.unregisterSession(clientId);
    register(clientId);
    manager.cleanupExpiredAllocators();
    expect(sessions.hasSession(clientId)).toBe(true);
  });

  test('resume after unregister reports resumed', () => {
    const clientId = fresh();
    register(clientId, { expiryInterval: 60 });
    sessions.unregisterSession(clientId);
    expect(register(clientId, { expiryInterval: 60 })).toBe(true);
  });

  test('resume applies a new expiry interval', () => {
    const clientId = fresh();
    register(clientId, { expiryInterval: 3600 });
    register(clientId, { expiryInterval: 0 });
    sessions.unregisterSession(clientId);
    manager.cleanupExpiredAllocators();
    expect(sessions.hasSession(clientId)).toBe(false);
  });

  test('counts the session in sessionCount', () => {
    const before = sessions.getMemoryStatistics().sessionCount;
    register(fresh());
    expect(sessions.getMemoryStatistics().sessionCount).toBe(before + 1);
  });

  test('lists the client in getClientMemoryUsage', () => {
    const clientId = fresh();
    register(clientId);
    expect(manager.getClientMemoryUsage().get(clientId)).toBe(0);
  });
});

describe('unregisterSession and expiry', () => {
  test('expiry 0 ends the session at once', () => {
    const clientId = fresh();
    register(clientId, { expiryInterval: 0 });
    const buffer = sessions.allocate(clientId, 100);
    const usage = manager.getGlobalMemoryUsage();

    sessions.unregisterSession(clientId);

    expect(sessions.hasSession(clientId)).toBe(false);
    expect(manager.getClientMemoryUsage().has(clientId)).toBe(false);
    expect(thrown(() => sessions.allocate(clientId, 10)).code).toBe('MQ_ERR_ALLOCATOR_NOT_FOUND');
    expect(thrown(() => sessions.unregisterSession(clientId)).code).toBe('MQ_ERR_ALLOCATOR_NOT_FOUND');
    // Its live buffer stays valid and charged until released.
    expect(buffer.length).toBe(100);
    expect(manager.getGlobalMemoryUsage()).toBe(usage);
    sessions.release(buffer);
    expect(manager.getGlobalMemoryUsage()).toBeLessThan(usage);
  });

  test('the default expiry of 0 ends the session at once', () => {
    const clientId = fresh();
    register(clientId);
    sessions.unregisterSession(clientId);
    expect(sessions.hasSession(clientId)).toBe(false);
  });

  test('cleanup counts each removed session', async () => {
    manager.cleanupExpiredAllocators();
    const first = fresh();
    const second = fresh();
    register(first, { expiryInterval: 1 });
    register(second, { expiryInterval: 1 });
    sessions.unregisterSession(first);
    sessions.unregisterSession(second);
    await sleep(1100);
    // Sessions left expiring by other suites in this process may count too.
    expect(manager.cleanupExpiredAllocators()).toBeGreaterThanOrEqual(2);
    expect(sessions.hasSession(first)).toBe(false);
    expect(sessions.hasSession(second)).toBe(false);
    expect(manager.cleanupExpiredAllocators()).toBe(0);
  });

  test('removed client leaves getClientMemoryUsage', () => {
    const clientId = fresh();
    register(clientId, { expiryInterval: 3600 });
    sessions.unregisterSession(clientId);
    sessions.sessionAllocators.cleanupSessionAllocators(clientId);
    expect(manager.getClientMemoryUsage().has(clientId)).toBe(false);
  });

  test('unregistered but unexpired client stays listed', () => {
    const clientId = fresh();
    register(clientId, { expiryInterval: 3600 });
    sessions.unregisterSession(clientId);
    manager.cleanupExpiredAllocators();
    expect(manager.getClientMemoryUsage().has(clientId)).toBe(true);
  });

  test('connected sessions are never cleaned up', () => {
    const clientId = fresh();
    register(clientId, { expiryInterval: 0 });
    manager.cleanupExpiredAllocators();
    expect(sessions.hasSession(clientId)).toBe(true);
  });

  test('never-expiring session survives cleanup', () => {
    const clientId = fresh();
    register(clientId, { expiryInterval: 0xffffffff });
    sessions.unregisterSession(clientId);
    manager.cleanupExpiredAllocators();
    expect(sessions.hasSession(clientId)).toBe(true);
  });

  test('expiry 1 s is kept by an immediate cleanup', () => {
    const clientId = fresh();
    register(clientId, { expiryInterval: 1 });
    sessions.unregisterSession(clientId);
    manager.cleanupExpiredAllocators();
    expect(sessions.hasSession(clientId)).toBe(true);
  });

  test('expiry 1 s is removed after 1.1 s', async () => {
    const clientId = fresh();
    register(clientId, { expiryInterval: 1 });
    sessions.unregisterSession(clientId);
    manager.cleanupExpiredAllocators();
    await sleep(1100);
    manager.cleanupExpiredAllocators();
    expect(sessions.hasSession(clientId)).toBe(false);
  });

  test('unregister of an unknown id throws MQ_ERR_ALLOCATOR_NOT_FOUND', () => {
    expect(thrown(() => sessions.unregisterSession('sessions-unknown')).code).toBe('MQ_ERR_ALLOCATOR_NOT_FOUND');
  });

  test('allocate after cleanup throws MQ_ERR_ALLOCATOR_NOT_FOUND', () => {
    const clientId = fresh();
    register(clientId);
    sessions.unregisterSession(clientId);
    manager.cleanupExpiredAllocators();
    expect(thrown(() => sessions.allocate(clientId, 10)).code).toBe('MQ_ERR_ALLOCATOR_NOT_FOUND');
  });

  test('allocate for an unknown id throws MQ_ERR_ALLOCATOR_NOT_FOUND', () => {
    expect(thrown(() => sessions.allocate('sessions-unknown', 10)).code).toBe('MQ_ERR_ALLOCATOR_NOT_FOUND');
  });

  test('getSessionMemoryUsage of an unknown id throws MQ_ERR_ALLOCATOR_NOT_FOUND', () => {
    expect(thrown(() => sessions.getSessionMemoryUsage('sessions-unknown')).code).toBe(
      'MQ_ERR_ALLOCATOR_NOT_FOUND',
    );
  });
});

describe('buffers alive after cleanup', () => {
  let clientId: string;
  let buffer: Buffer;
  let globalWith: number;

  beforeEach(() => {
    clientId = fresh();
    register(clientId);
    buffer = sessions.allocate(clientId, 6000).fill(0x5a);
    globalWith = manager.getGlobalMemoryUsage();
    sessions.unregisterSession(clientId);
    manager.cleanupExpiredAllocators();
  });

  afterEach(() => {
    if (sessions.isSessionBuffer(buffer)) sessions.release(buffer);
  });

  test('keep their contents', () => {
    expect(buffer.every((byte) => byte === 0x5a)).toBe(true);
  });

  test('stay writable', () => {
    buffer.fill(0x11);
    expect(buffer[5999]).toBe(0x11);
  });

  test('stay charged globally', () => {
    expect(manager.getGlobalMemoryUsage()).toBe(globalWith);
  });

  test('stay charged to the thread', () => {
    const before = sessions.getMemoryStatistics().totalUsage;
    sessions.release(buffer);
    expect(before - sessions.getMemoryStatistics().totalUsage).toBeGreaterThanOrEqual(6000);
  });

  test('release uncharges them', () => {
    sessions.release(buffer);
    expect(globalWith - manager.getGlobalMemoryUsage()).toBeGreaterThanOrEqual(6000);
  });

  test('garbage collection uncharges them', async () => {
    buffer = Buffer.alloc(0);
    await settle();
    expect(globalWith - manager.getGlobalMemoryUsage()).toBeGreaterThanOrEqual(6000);
  });

  test('a new session with the same id starts empty', () => {
    register(clientId);
    expect(sessions.getSessionMemoryUsage(clientId)).toBe(0);
  });

  test('old buffer release spares the new session', () => {
    register(clientId);
    const fresher = sessions.allocate(clientId, 100);
    const usage = sessions.getSessionMemoryUsage(clientId);
    sessions.release(buffer);
    expect(sessions.getSessionMemoryUsage(clientId)).toBe(usage);
    sessions.release(fresher);
  });
});

describe('cleanupSessionAllocators', () => {
  test('removes a connected session at once', () => {
    const clientId = fresh();
    register(clientId);
    sessions.sessionAllocators.cleanupSessionAllocators(clientId);
    expect(sessions.hasSession(clientId)).toBe(false);
  });

  test('returns false for an unknown id', () => {
    expect(sessions.sessionAllocators.cleanupSessionAllocators('sessions-unknown')).toBe(false);
  });
});

describe('look-alike ids', () => {
  const families: Array<[string, string[]]> = [
    ['prefixes', ['p', 'pa', 'p/a', 'p/', 'p/a/b', 'pa/']],
    ['hostile names', ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'prototype', 'valueOf']],
    ['wildcards and separators', ['+', '#', '*', '?', '/', 'thread-0', 'queue', 'worker', 'root', 'message_cache']],
    ['quotes and newlines', ['q"1', "q'1", 'q\n1', 'q\r\n1', 'q\\1', 'q`1', 'q\t1']],
    ['non-ASCII', ['é', 'e\u0301', 'ü', 'Ü', '客户端', 'клиент', 'ﬁ', 'fi']],
    ['emoji', ['😀', '😀😀', '👩‍👩‍👧', '👩', '🏳️‍🌈']],
    ['control characters and spaces', ['n', 'n\u0001', 'n\u0001x', ' n', 'n ', '\u00a0n']],
  ];

  describe.each(families)('%s', (_family, ids) => {
    let sizes: Map<string, number>;

    beforeAll(() => {
      sizes = new Map();
      ids.forEach((clientId, index) => {
        register(clientId, { memoryLimit: 0 });
        sessions.allocate(clientId, 1000 * (index + 1)).fill(index);
        sizes.set(clientId, sessions.getSessionMemoryUsage(clientId));
      });
    });

    afterAll(() => {
      for (const clientId of ids) sessions.sessionAllocators.cleanupSessionAllocators(clientId);
    });

    test('each id has its own usage', () => {
      const usages = manager.getClientMemoryUsage();
      expect(ids.map((clientId) => usages.get(clientId))).toEqual(ids.map((clientId) => sizes.get(clientId)));
    });

    test('each id is listed once', () => {
      const listed = manager.getClientMemoryDetails().filter((entry) => ids.includes(entry.clientId));
      expect(listed).toHaveLength(ids.length);
    });

    test('each id keeps its own limit', () => {
      ids.forEach((clientId, index) => manager.setClientMemoryLimit(clientId, 100_000 + index));
      expect(ids.map((clientId) => manager.getClientMemoryLimit(clientId))).toEqual(
        ids.map((_clientId, index) => 100_000 + index),
      );
    });

    test('the hierarchy names every id exactly', () => {
      const hierarchy = manager.getAllocatorHierarchy();
      const names = hierarchy.children.flatMap((thread) => thread.children.map((child) => child.id));
      expect(ids.filter((clientId) => !names.includes(clientId))).toEqual([]);
    });

    test('cleaning up one id leaves the others', () => {
      const [first, ...others] = ids;
      sessions.unregisterSession(first);
      manager.cleanupExpiredAllocators();
      const usages = manager.getClientMemoryUsage();
      expect(others.map((clientId) => usages.get(clientId))).toEqual(others.map((clientId) => sizes.get(clientId)));
    });

    test('the cleaned-up id is gone', () => {
      expect(sessions.hasSession(ids[0])).toBe(false);
    });
  });
});

describe('long ids', () => {
  const limit = 65535;

  test.each([
    ['ASCII', 'x'.repeat(limit)],
    ['two-byte characters', 'x' + 'é'.repeat((limit - 1) / 2)],
    ['three-byte characters', '€'.repeat(limit / 3)],
    ['emoji', 'xxx' + '😀'.repeat((limit - 3) / 4)],
  ])('%s at 65,535 bytes are accepted', (_name, clientId) => {
    expect(Buffer.byteLength(clientId)).toBe(limit);
    expect(register(clientId)).toBe(false);
    sessions.sessionAllocators.cleanupSessionAllocators(clientId);
  });

  test.each([
    ['ASCII', 'x'.repeat(limit + 1)],
    ['two-byte characters', 'é'.repeat((limit + 1) / 2)],
    ['three-byte characters', '€'.repeat(limit / 3) + 'x'],
    ['emoji', '😀'.repeat((limit + 1) / 4)],
  ])('%s at 65,536 bytes throw MQ_ERR_INVALID_ARGS', (_name, clientId) => {
    expect(Buffer.byteLength(clientId)).toBe(limit + 1);
    expect(thrown(() => sessions.registerSession(clientId)).code).toBe('MQ_ERR_INVALID_ARGS');
  });

  test('an over-long id is named shortened in the message', () => {
    const message = thrown(() => sessions.registerSession('y'.repeat(limit + 1))).message;
    expect(message.length).toBeLessThan(1000);
  });

  test('ids differing only in the last byte do not share', () => {
    const stem = 'L'.repeat(limit - 1);
    register(`${stem}1`);
    register(`${stem}2`);
    const kept = sessions.allocate(`${stem}2`, 3000);
    sessions.unregisterSession(`${stem}1`);
    manager.cleanupExpiredAllocators();
    expect(sessions.getSessionMemoryUsage(`${stem}2`)).toBeGreaterThanOrEqual(3000);
    sessions.release(kept);
    sessions.sessionAllocators.cleanupSessionAllocators(`${stem}2`);
  });
});

describe('lone surrogates', () => {
  test.each([
    ['high surrogate alone', '\ud800'],
    ['low surrogate alone', '\udc00'],
    ['high surrogate at the end', 'abc\ud83d'],
    ['reversed pair', '\ude00\ud83d'],
  ])('%s throws MQ_ERR_INVALID_ARGS', (_name, clientId) => {
    expect(thrown(() => sessions.registerSession(clientId)).code).toBe('MQ_ERR_INVALID_ARGS');
  });

  test('two ids with different lone surrogates never collide', () => {
    // UTF-8 encoding turns both into U+FFFD, so only rejecting them keeps them apart.
    thrown(() => sessions.registerSession('s\ud800'));
    expect(thrown(() => sessions.registerSession('s\udbff')).code).toBe('MQ_ERR_INVALID_ARGS');
  });

  test('setClientMemoryLimit rejects a lone surrogate', () => {
    expect(thrown(() => manager.setClientMemoryLimit('\ud800', 10)).code).toBe('MQ_ERR_INVALID_ARGS');
  });

  test('the replacement character itself is a valid id', () => {
    expect(register('s\ufffd')).toBe(false);
  });
});

describe('U+0000 in a client id', () => {
  test.each([
    ['inside', 'a\u0000b'],
    ['at the start', '\u0000a'],
    ['alone', '\u0000'],
  ])('%s throws MQ_ERR_INVALID_ARGS', (_name, clientId) => {
    const error = thrown(() => sessions.registerSession(clientId));
    expect(error.code).toBe('MQ_ERR_INVALID_ARGS');
    expect(error.message).toContain('U+0000');
    expect(sessions.hasSession('a')).toBe(false);
  });

  test('setClientMemoryLimit rejects it too', () => {
    expect(thrown(() => manager.setClientMemoryLimit('a\u0000b', 10)).code).toBe('MQ_ERR_INVALID_ARGS');
  });
});
