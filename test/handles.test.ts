// Allocator handles: release frees only buffers of the handle's subtree, and a
// session's queue and worker children go only with the session.
import { GlobalSessionManager, MqttAllocatorError } from '../lib';
import { thrownBy } from './helpers/errors';

const manager = GlobalSessionManager.instance();
const sessions = manager.getThreadManager();
const allocators = sessions.sessionAllocators;
const CLIENT_A = `handles-a-${process.pid}`;
const CLIENT_B = `handles-b-${process.pid}`;

beforeAll(() => {
  sessions.registerSession(CLIENT_A, { expiryInterval: 0 });
  sessions.registerSession(CLIENT_B, { expiryInterval: 0 });
});

afterAll(() => {
  allocators.cleanupSessionAllocators(CLIENT_A);
  allocators.cleanupSessionAllocators(CLIENT_B);
});

/** Returns the MqttAllocatorError that `action` throws. */
function errorOf(action: () => unknown): MqttAllocatorError {
  return thrownBy(action, MqttAllocatorError);
}

describe('AllocatorHandle.release', () => {
  test('frees a buffer of its own allocator', () => {
    const handle = allocators.getSessionAllocator(CLIENT_A);
    const before = handle.usage;
    const buffer = handle.allocate(500);

    handle.release(buffer);

    expect(buffer.length).toBe(0);
    expect(handle.usage).toBe(before);
  });

  test('frees a buffer of a child allocator', () => {
    const handle = allocators.getSessionAllocator(CLIENT_A);
    const before = handle.usage;
    const buffer = sessions.allocate(CLIENT_A, 700, 'queue');

    handle.release(buffer);

    expect(buffer.length).toBe(0);
    expect(handle.usage).toBe(before);
  });

  describe("another client's buffer", () => {
    let buffer: Buffer;
    let baseline: number;
    let usageOfB: number;
    let error: MqttAllocatorError;

    beforeAll(() => {
      baseline = sessions.getSessionMemoryUsage(CLIENT_B);
      buffer = sessions.allocate(CLIENT_B, 900);
      usageOfB = sessions.getSessionMemoryUsage(CLIENT_B);
      error = errorOf(() => allocators.getSessionAllocator(CLIENT_A).release(buffer));
    });

    test('throws MQ_ERR_INVALID_ARGS', () => {
      expect(error.code).toBe('MQ_ERR_INVALID_ARGS');
    });

    test('names both allocators', () => {
      expect(error.message).toContain(`"${CLIENT_B}"`);
      expect(error.message).toContain(`"${CLIENT_A}"`);
    });

    test('names a queue allocator by its session', () => {
      const queued = sessions.allocate(CLIENT_B, 64, 'queue');
      try {
        const message = errorOf(() => allocators.getSessionQueueAllocator(CLIENT_A).release(queued)).message;
        expect(message).toContain(`"queue" of "${CLIENT_B}"`);
        expect(message).toContain(`"queue" of "${CLIENT_A}"`);
      } finally {
        sessions.release(queued);
      }
    });

    test('leaves the buffer allocated', () => {
      expect(buffer.length).toBe(900);
      expect(sessions.getSessionMemoryUsage(CLIENT_B)).toBe(usageOfB);
    });

    test('its own handle still frees it', () => {
      allocators.getSessionAllocator(CLIENT_B).release(buffer);

      expect(buffer.length).toBe(0);
      expect(sessions.getSessionMemoryUsage(CLIENT_B)).toBe(baseline);
    });
  });

  test('a child handle rejects its parent buffer', () => {
    const buffer = sessions.allocate(CLIENT_A, 300);

    const error = errorOf(() => allocators.getSessionQueueAllocator(CLIENT_A).release(buffer));

    expect(error.code).toBe('MQ_ERR_INVALID_ARGS');
    expect(buffer.length).toBe(300);
    sessions.release(buffer);
  });

  test('the message cache handle rejects a session buffer', () => {
    const buffer = sessions.allocate(CLIENT_A, 300);

    const error = errorOf(() => allocators.getMessageCacheAllocator().release(buffer));

    expect(error.code).toBe('MQ_ERR_INVALID_ARGS');
    expect(buffer.length).toBe(300);
    sessions.release(buffer);
  });

  test('the message cache handle frees a cache buffer', () => {
    const cache = allocators.getMessageCacheAllocator();
    const before = cache.usage;
    const buffer = sessions.allocateCache(256);

    cache.release(buffer);

    expect(buffer.length).toBe(0);
    expect(cache.usage).toBe(before);
  });

  test('a released buffer still throws as released', () => {
    const handle = allocators.getSessionAllocator(CLIENT_A);
    const buffer = handle.allocate(64);
    handle.release(buffer);

    expect(() => handle.release(buffer)).toThrow('already released');
  });
});

describe('AllocatorHandle.removeChild on a session', () => {
  test.each(['queue', 'worker'])('throws for its %s child', (id) => {
    const handle = allocators.getSessionAllocator(CLIENT_A);

    const error = errorOf(() => handle.removeChild(id));

    expect(error.code).toBe('MQ_ERR_ALLOCATOR_HIERARCHY');
    expect(error.message).toContain('cleanupSessionAllocators');
    expect(handle.children().map((child) => child.id).sort()).toEqual(['queue', 'worker']);
  });

  test('the queue child still allocates', () => {
    const buffer = sessions.allocate(CLIENT_A, 128, 'queue');

    expect(buffer.length).toBe(128);
    sessions.release(buffer);
  });

  test('removes a child of its own', () => {
    const handle = allocators.getSessionAllocator(CLIENT_A);
    const child = handle.createChild('extra', 'SESSION_WORKER');

    handle.removeChild('extra');

    expect(child.detached).toBe(true);
    expect(handle.children().map((entry) => entry.id).sort()).toEqual(['queue', 'worker']);
  });
});
