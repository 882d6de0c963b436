// Byte limits: refusals and their errors and events, tryAllocate, lowering a
// limit below usage, limits set before registration, global and thread limits.
import { GlobalSessionManager, LimitExceededEvent, MqttAllocatorError } from '../lib';
import { settle, thrown } from './helpers/memory';

const manager = GlobalSessionManager.instance();
const sessions = manager.getThreadManager();
const live: Buffer[] = [];
let counter = 0;

/** Registers a fresh client with the given limit. */
function client(limit: number): string {
  counter += 1;
  const clientId = `limits-${counter}`;
  sessions.registerSession(clientId, { memoryLimit: limit, expiryInterval: 0 });
  return clientId;
}

function keep(buffer: Buffer): Buffer {
  live.push(buffer);
  return buffer;
}

/** Usable bytes the backend reserves for a request of `size` bytes. */
function chargeOf(size: number): number {
  const probe = client(0);
  const buffer = sessions.allocate(probe, size);
  const charge = sessions.getSessionMemoryUsage(probe);
  sessions.release(buffer);
  return charge;
}

function captureEvents(): { events: LimitExceededEvent[]; stop: () => void } {
  const events: LimitExceededEvent[] = [];
  const listener = (event: LimitExceededEvent): void => {
    events.push(event);
  };
  manager.on('limitExceeded', listener);
  return { events, stop: () => manager.off('limitExceeded', listener) };
}

afterEach(() => {
  manager.setGlobalMemoryLimit(0);
  manager.setThreadMemoryLimit(0);
  for (const buffer of live.splice(0)) sessions.release(buffer);
});

afterAll(async () => {
  await settle();
  for (let i = 1; i <= counter; i++) sessions.sessionAllocators.cleanupSessionAllocators(`limits-${i}`);
});

describe('rejection error', () => {
  let error: MqttAllocatorError;
  let clientId: string;
  let held: number;

  beforeEach(() => {
    clientId = client(4096);
    keep(sessions.allocate(clientId, 1024));
    held = sessions.getSessionMemoryUsage(clientId);
    error = thrown(() => sessions.allocate(clientId, 4000));
  });

  test('is an MqttAllocatorError', () => {
    expect(error).toBeInstanceOf(MqttAllocatorError);
  });

  test('is an Error', () => {
    expect(error).toBeInstanceOf(Error);
  });

  test('has code MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED', () => {
    expect(error.code).toBe('MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED');
  });

  test('has errno -704', () => {
    expect(error.errno).toBe(-704);
  });

  test('names the client', () => {
    expect(error.clientId).toBe(clientId);
  });

  test('names the rejecting allocator’s tag', () => {
    expect(error.tag).toBe('SESSION');
  });

  test('gives the requested bytes', () => {
    expect(error.requested).toBe(4000);
  });

  test('gives the usage', () => {
    expect(error.usage).toBe(held);
  });

  test('gives the limit', () => {
    expect(error.limit).toBe(4096);
  });

  test('message names the client', () => {
    expect(error.message).toContain(clientId);
  });

  test('charges nothing', () => {
    expect(sessions.getSessionMemoryUsage(clientId)).toBe(held);
  });

  test('does not raise the peak', () => {
    const allocator = sessions.sessionAllocators.getSessionAllocator(clientId);
    expect(allocator.peak).toBe(held);
  });
});

describe('limitExceeded event', () => {
  test('carries the rejection context', () => {
    const clientId = client(2048);
    keep(sessions.allocate(clientId, 512));
    const usage = sessions.getSessionMemoryUsage(clientId);
    const capture = captureEvents();
    thrown(() => sessions.allocate(clientId, 3000));
    capture.stop();
    expect(capture.events).toEqual([
      expect.objectContaining({ clientId, tag: 'SESSION', requested: 3000, usage, limit: 2048 }),
    ]);
  });

  test('is emitted by tryAllocate', () => {
    const clientId = client(1024);
    const capture = captureEvents();
    sessions.tryAllocate(clientId, 2048);
    capture.stop();
    expect(capture.events).toHaveLength(1);
  });

  test('counts a violation for the tag', () => {
    const clientId = client(1024);
    const before = manager.getLimitViolations().SESSION;
    sessions.tryAllocate(clientId, 2048);
    expect(manager.getLimitViolations().SESSION).toBe(before + 1);
  });
});

describe('tryAllocate', () => {
  test('returns undefined when rejected', () => {
    const clientId = client(1024);
    expect(sessions.tryAllocate(clientId, 2048)).toBeUndefined();
  });

  test('charges nothing when rejected', () => {
    const clientId = client(1024);
    sessions.tryAllocate(clientId, 2048);
    expect(sessions.getSessionMemoryUsage(clientId)).toBe(0);
  });

  test('returns a Buffer when it fits', () => {
    const clientId = client(4096);
    const buffer = keep(sessions.tryAllocate(clientId, 100) as Buffer);
    expect(buffer.length).toBe(100);
  });

  test('still throws for an invalid size', () => {
    const clientId = client(4096);
    expect(thrown(() => sessions.tryAllocate(clientId, -1)).code).toBe('MQ_ERR_INVALID_ARGS');
  });
});

describe('limit boundary', () => {
  test('one-block limit admits that block', () => {
    const charge = chargeOf(1000);
    const clientId = client(charge);
    expect(sessions.tryAllocate(clientId, 1000)).toBeInstanceOf(Buffer);
  });

  test('a full client rejects one byte', () => {
    const charge = chargeOf(1000);
    const clientId = client(charge);
    keep(sessions.allocate(clientId, 1000));
    expect(sessions.tryAllocate(clientId, 1)).toBeUndefined();
  });

  test('a full client reports its limit exceeded', () => {
    const charge = chargeOf(1000);
    const clientId = client(charge);
    keep(sessions.allocate(clientId, 1000));
    expect(manager.isClientMemoryLimitExceeded(clientId)).toBe(true);
  });

  test('release makes room again', () => {
    const clientId = client(chargeOf(1000));
    sessions.release(sessions.allocate(clientId, 1000));
    expect(sessions.tryAllocate(clientId, 1000)).toBeInstanceOf(Buffer);
  });

  test('garbage collection makes room again', async () => {
    const clientId = client(chargeOf(1000));
    ((): void => {
      sessions.allocate(clientId, 1000);
    })();
    await settle();
    expect(sessions.tryAllocate(clientId, 1000)).toBeInstanceOf(Buffer);
  });

  test('queue allocations count against the session limit', () => {
    const clientId = client(4096);
    keep(sessions.allocate(clientId, 3000, 'queue'));
    expect(thrown(() => sessions.allocate(clientId, 3000, 'worker')).tag).toBe('SESSION');
  });
});

describe('lowering a limit below usage', () => {
  let clientId: string;
  let buffer: Buffer;
  let usage: number;

  beforeEach(() => {
    clientId = client(0);
    buffer = keep(sessions.allocate(clientId, 8192).fill(9));
    usage = sessions.getSessionMemoryUsage(clientId);
    manager.setClientMemoryLimit(clientId, 1024);
  });

  test('frees nothing', () => {
    expect(sessions.getSessionMemoryUsage(clientId)).toBe(usage);
  });

  test('leaves live buffers intact', () => {
    expect(buffer.every((byte) => byte === 9)).toBe(true);
  });

  test('rejects new allocations', () => {
    expect(thrown(() => sessions.allocate(clientId, 1)).code).toBe('MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED');
  });

  test('reports the limit exceeded', () => {
    expect(manager.isClientMemoryLimitExceeded(clientId)).toBe(true);
  });

  test('reports the new limit', () => {
    expect(manager.getClientMemoryLimit(clientId)).toBe(1024);
  });

  test('limit 0 lifts it', () => {
    manager.setClientMemoryLimit(clientId, 0);
    expect(manager.isClientMemoryLimitExceeded(clientId)).toBe(false);
  });

  test('limit 0 admits allocations again', () => {
    manager.setClientMemoryLimit(clientId, 0);
    expect(sessions.tryAllocate(clientId, 1)).toBeInstanceOf(Buffer);
  });
});

describe('limit set before registration', () => {
  test('is reported before the client registers', () => {
    manager.setClientMemoryLimit('limits-early-a', 3000);
    expect(manager.getClientMemoryLimit('limits-early-a')).toBe(3000);
  });

  test('applies when the client registers', () => {
    manager.setClientMemoryLimit('limits-early-b', 3000);
    expect(sessions.registerSession('limits-early-b', { expiryInterval: 0 }).limit).toBe(3000);
    sessions.sessionAllocators.cleanupSessionAllocators('limits-early-b');
  });

  test('rejects allocations past it', () => {
    manager.setClientMemoryLimit('limits-early-c', 3000);
    sessions.registerSession('limits-early-c', { expiryInterval: 0 });
    expect(sessions.tryAllocate('limits-early-c', 4000)).toBeUndefined();
    sessions.sessionAllocators.cleanupSessionAllocators('limits-early-c');
  });

  test('a memoryLimit given at registration wins', () => {
    manager.setClientMemoryLimit('limits-early-d', 3000);
    expect(sessions.registerSession('limits-early-d', { memoryLimit: 9000, expiryInterval: 0 }).limit).toBe(9000);
    sessions.sessionAllocators.cleanupSessionAllocators('limits-early-d');
  });

  test('ignores ids sharing a prefix', () => {
    manager.setClientMemoryLimit('limits-early-e', 3000);
    expect(manager.getClientMemoryLimit('limits-early-e2')).toBe(manager.getDefaultClientMemoryLimit());
  });
});

describe('isClientMemoryLimitExceeded', () => {
  test('false under the limit', () => {
    const clientId = client(4096);
    keep(sessions.allocate(clientId, 100));
    expect(manager.isClientMemoryLimitExceeded(clientId)).toBe(false);
  });

  test('false without a limit', () => {
    const clientId = client(0);
    keep(sessions.allocate(clientId, 100_000));
    expect(manager.isClientMemoryLimitExceeded(clientId)).toBe(false);
  });

  test('unknown client throws MQ_ERR_ALLOCATOR_NOT_FOUND', () => {
    expect(thrown(() => manager.isClientMemoryLimitExceeded('limits-never-registered')).code).toBe(
      'MQ_ERR_ALLOCATOR_NOT_FOUND',
    );
  });
});

describe('global limit', () => {
  test('is reported', () => {
    manager.setGlobalMemoryLimit(123_456_789);
    expect(manager.getGlobalMemoryLimit()).toBe(123_456_789);
  });

  test('rejects an allocation past it', () => {
    const clientId = client(0);
    manager.setGlobalMemoryLimit(manager.getGlobalMemoryUsage() + 8192);
    expect(thrown(() => sessions.allocate(clientId, 16_384)).code).toBe('MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED');
  });

  test('rejection names the root tag', () => {
    const clientId = client(0);
    manager.setGlobalMemoryLimit(manager.getGlobalMemoryUsage() + 8192);
    expect(thrown(() => sessions.allocate(clientId, 16_384)).tag).toBe('ROOT');
  });

  test('rejection still names the client', () => {
    const clientId = client(0);
    manager.setGlobalMemoryLimit(manager.getGlobalMemoryUsage() + 8192);
    expect(thrown(() => sessions.allocate(clientId, 16_384)).clientId).toBe(clientId);
  });

  test('bounds the sum over clients', () => {
    const first = client(0);
    const second = client(0);
    manager.setGlobalMemoryLimit(manager.getGlobalMemoryUsage() + 3 * chargeOf(4096));
    keep(sessions.allocate(first, 4096));
    keep(sessions.allocate(second, 4096));
    keep(sessions.allocate(first, 4096));
    expect(sessions.tryAllocate(second, 4096)).toBeUndefined();
  });

  test('bounds the message cache', () => {
    manager.setGlobalMemoryLimit(manager.getGlobalMemoryUsage() + 1024);
    expect(thrown(() => sessions.allocateCache(4096)).code).toBe('MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED');
  });

  test('usage never passes it', () => {
    const clientId = client(0);
    const limit = manager.getGlobalMemoryUsage() + 50_000;
    manager.setGlobalMemoryLimit(limit);
    while (sessions.tryAllocate(clientId, 1000) !== undefined) {
      // Fill up to the limit. These buffers are freed by garbage collection, not by afterEach.
    }
    expect(manager.getGlobalMemoryUsage()).toBeLessThanOrEqual(limit);
  });
});

describe('thread limit', () => {
  test('is reported', () => {
    manager.setThreadMemoryLimit(987_654);
    expect(manager.getThreadMemoryLimit()).toBe(987_654);
  });

  test('rejects an allocation past it', () => {
    const clientId = client(0);
    manager.setThreadMemoryLimit(sessions.getMemoryStatistics().totalUsage + 8192);
    expect(thrown(() => sessions.allocate(clientId, 16_384)).tag).toBe('SESSION_MANAGER');
  });

  test('bounds the sum over this thread’s clients', () => {
    const first = client(0);
    const second = client(0);
    const charge = chargeOf(4096);
    const stats = sessions.getMemoryStatistics();
    manager.setThreadMemoryLimit(stats.totalUsage - stats.cacheUsage + 2 * charge);
    keep(sessions.allocate(first, 4096));
    keep(sessions.allocate(second, 4096));
    expect(sessions.tryAllocate(first, 4096)).toBeUndefined();
  });

  test('0 removes it', () => {
    const clientId = client(0);
    manager.setThreadMemoryLimit(1);
    manager.setThreadMemoryLimit(0);
    expect(sessions.tryAllocate(clientId, 16_384)).toBeInstanceOf(Buffer);
  });
});

describe('allocation the backend cannot provide', () => {
  // 2^52 bytes (4 PiB) exceeds the user address space under 4-level paging
  // (x86-64 and arm64), and Linux's default overcommit heuristic rejects it
  // on any machine with less memory and swap than that.
  const HUGE = 2 ** 52;

  test('throws MQ_ERR_ALLOCATOR and charges nothing', () => {
    const clientId = client(0);
    const before = manager.getGlobalMemoryUsage();

    expect(thrown(() => sessions.allocate(clientId, HUGE)).code).toBe('MQ_ERR_ALLOCATOR');
    expect(sessions.getSessionMemoryUsage(clientId)).toBe(0);
    expect(manager.getGlobalMemoryUsage()).toBe(before);
  });

  test('raises no peak', () => {
    const clientId = client(0);
    const allocator = sessions.sessionAllocators.getSessionAllocator(clientId);
    const rootPeak = manager.getAllocatorHierarchy().peak;
    thrown(() => sessions.allocate(clientId, HUGE));

    expect(allocator.peak).toBe(0);
    expect(manager.getAllocatorHierarchy().peak).toBe(rootPeak);
  });
});
