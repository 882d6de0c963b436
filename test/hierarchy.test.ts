// The allocator hierarchy, its text form, tag usage and per-thread statistics.
import { AllocatorNode, formatBytes, GlobalSessionManager, MemoryTag } from '../lib';
import { settle } from './helpers/memory';

const manager = GlobalSessionManager.instance();
const sessions = manager.getThreadManager();
const CLIENT_A = 'hierarchy-a';
const CLIENT_B = 'hierarchy-b';
const held: Buffer[] = [];

function findNode(node: AllocatorNode, id: string): AllocatorNode | undefined {
  if (node.id === id) return node;
  for (const child of node.children) {
    const found = findNode(child, id);
    if (found !== undefined) return found;
  }
  return undefined;
}

function nodeOf(id: string): AllocatorNode {
  const node = findNode(manager.getAllocatorHierarchy(), id);
  if (node === undefined) throw new Error(`no node ${id}`);
  return node;
}

beforeAll(() => {
  sessions.registerSession(CLIENT_A, { memoryLimit: 1024 * 1024, expiryInterval: 0 });
  sessions.registerSession(CLIENT_B, { memoryLimit: 0, expiryInterval: 0 });
  held.push(sessions.allocate(CLIENT_A, 3000));
  held.push(sessions.allocate(CLIENT_A, 2000, 'queue'));
  held.push(sessions.allocate(CLIENT_B, 1000, 'worker'));
});

afterAll(async () => {
  for (const buffer of held) sessions.release(buffer);
  await settle();
  sessions.sessionAllocators.cleanupSessionAllocators(CLIENT_A);
  sessions.sessionAllocators.cleanupSessionAllocators(CLIENT_B);
});

describe('getAllocatorHierarchy', () => {
  test('the root is named root', () => {
    expect(manager.getAllocatorHierarchy().id).toBe('root');
  });

  test('the root has tag ROOT', () => {
    expect(manager.getAllocatorHierarchy().tag).toBe('ROOT');
  });

  test('every node has the documented fields', () => {
    const keys = Object.keys(manager.getAllocatorHierarchy()).sort();
    expect(keys).toEqual(expect.arrayContaining(['children', 'id', 'limit', 'peak', 'tag', 'usage']));
  });

  test('every node has numeric usage, peak and limit', () => {
    const bad: string[] = [];
    const walk = (node: AllocatorNode): void => {
      if (![node.usage, node.peak, node.limit].every((value) => Number.isSafeInteger(value) && value >= 0)) bad.push(node.id);
      node.children.forEach(walk);
    };
    walk(manager.getAllocatorHierarchy());
    expect(bad).toEqual([]);
  });

  test('root usage equals getGlobalMemoryUsage', () => {
    expect(manager.getAllocatorHierarchy().usage).toBe(manager.getGlobalMemoryUsage());
  });

  test('root usage is the sum of its children', () => {
    const root = manager.getAllocatorHierarchy();
    expect(root.children.reduce((sum, child) => sum + child.usage, root.selfUsage)).toBe(root.usage);
  });

  test('the root has a message_cache child', () => {
    expect(manager.getAllocatorHierarchy().children.find((child) => child.id === 'message_cache')?.tag).toBe(
      'MESSAGE_CACHE',
    );
  });

  test('the client sits under a SESSION_MANAGER thread node', () => {
    const thread = manager.getAllocatorHierarchy().children.find((child) => child.children.some((c) => c.id === CLIENT_A));
    expect(thread?.tag).toBe('SESSION_MANAGER');
  });

  test('the client node has tag SESSION', () => {
    expect(nodeOf(CLIENT_A).tag).toBe('SESSION');
  });

  test('the client node carries its limit', () => {
    expect(nodeOf(CLIENT_A).limit).toBe(1024 * 1024);
  });

  test('the client node has queue and worker children', () => {
    expect(nodeOf(CLIENT_A).children.map((child) => [child.id, child.tag])).toEqual(
      expect.arrayContaining([
        ['queue', 'SESSION_QUEUE'],
        ['worker', 'SESSION_WORKER'],
      ]),
    );
  });

  test('the client node usage equals getSessionMemoryUsage', () => {
    expect(nodeOf(CLIENT_A).usage).toBe(sessions.getSessionMemoryUsage(CLIENT_A));
  });

  test('the client node usage includes its queue', () => {
    const node = nodeOf(CLIENT_A);
    const queue = node.children.find((child) => child.id === 'queue');
    expect(node.usage).toBe(node.selfUsage + (queue?.usage ?? Number.NaN));
  });

  test('peak is at least usage', () => {
    const node = nodeOf(CLIENT_A);
    expect(node.peak).toBeGreaterThanOrEqual(node.usage);
  });
});

describe('formatAllocatorHierarchy', () => {
  test('has one line per node', () => {
    let count = 0;
    const walk = (node: AllocatorNode): void => {
      count += 1;
      node.children.forEach(walk);
    };
    walk(manager.getAllocatorHierarchy());
    expect(manager.formatAllocatorHierarchy().split('\n')).toHaveLength(count);
  });

  test.each([CLIENT_A, CLIENT_B])('names client %s', (clientId) => {
    expect(manager.formatAllocatorHierarchy()).toContain(clientId);
  });

  test('shows a limited client with usage against limit', () => {
    const usage = formatBytes(sessions.getSessionMemoryUsage(CLIENT_A));
    expect(manager.formatAllocatorHierarchy()).toContain(`${CLIENT_A} [SESSION] ${usage} / 1.0 MiB`);
  });

  test('shows an unlimited client as unlimited', () => {
    const usage = formatBytes(sessions.getSessionMemoryUsage(CLIENT_B));
    expect(manager.formatAllocatorHierarchy()).toContain(`${CLIENT_B} [SESSION] ${usage} / unlimited`);
  });

  test('an id with a newline stays on one line', () => {
    sessions.registerSession('hierarchy\nsplit', { expiryInterval: 0 });
    const lines = manager.formatAllocatorHierarchy().split('\n');
    sessions.sessionAllocators.cleanupSessionAllocators('hierarchy\nsplit');
    expect(lines.filter((line) => line.includes('"hierarchy\\nsplit"'))).toHaveLength(1);
  });
});

describe('formatBytes', () => {
  test.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [1536, '1.5 KiB'],
    [1024 * 1024, '1.0 MiB'],
    [5 * 1024 ** 3, '5.0 GiB'],
  ])('%i is %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe('getTagUsage', () => {
  test('has every tag name as a key', () => {
    expect(Object.keys(manager.getTagUsage()).sort()).toEqual(Object.keys(MemoryTag).sort());
  });

  test.each([
    ['session', 'SESSION'],
    ['queue', 'SESSION_QUEUE'],
    ['worker', 'SESSION_WORKER'],
  ] as const)('a %s allocation counts under %s', (component, tag) => {
    const before = manager.getTagUsage()[tag];
    const usageBefore = sessions.getSessionMemoryUsage(CLIENT_B);
    const buffer = sessions.allocate(CLIENT_B, 777, component);
    const delta = sessions.getSessionMemoryUsage(CLIENT_B) - usageBefore;
    expect(manager.getTagUsage()[tag] - before).toBe(delta);
    sessions.release(buffer);
  });

  test('a cache allocation counts under MESSAGE_CACHE', () => {
    const before = manager.getTagUsage().MESSAGE_CACHE;
    const buffer = sessions.allocateCache(777);
    expect(manager.getTagUsage().MESSAGE_CACHE - before).toBeGreaterThanOrEqual(777);
    sessions.release(buffer);
  });

  test('release returns the tag to its value', () => {
    const before = manager.getTagUsage().SESSION_QUEUE;
    sessions.release(sessions.allocate(CLIENT_B, 5000, 'queue'));
    expect(manager.getTagUsage().SESSION_QUEUE).toBe(before);
  });
});

describe('getMemoryStatistics', () => {
  test('has the documented fields', () => {
    expect(Object.keys(sessions.getMemoryStatistics())).toEqual(
      expect.arrayContaining(['sessionUsage', 'queueUsage', 'workerUsage', 'cacheUsage', 'totalUsage', 'sessionCount']),
    );
  });

  test('totalUsage is the sum of the parts', () => {
    const stats = sessions.getMemoryStatistics();
    expect(stats.sessionUsage + stats.queueUsage + stats.workerUsage + stats.cacheUsage).toBe(stats.totalUsage);
  });

  test('counts this thread’s sessions', () => {
    const before = sessions.getMemoryStatistics().sessionCount;
    sessions.registerSession('hierarchy-count', { expiryInterval: 0 });
    const after = sessions.getMemoryStatistics().sessionCount;
    sessions.sessionAllocators.cleanupSessionAllocators('hierarchy-count');
    expect(after).toBe(before + 1);
  });

  test('a worker allocation shows in workerUsage', () => {
    const before = sessions.getMemoryStatistics().workerUsage;
    const buffer = sessions.allocate(CLIENT_B, 4000, 'worker');
    expect(sessions.getMemoryStatistics().workerUsage - before).toBeGreaterThanOrEqual(4000);
    sessions.release(buffer);
  });

  test('a session allocation shows in sessionUsage', () => {
    const before = sessions.getMemoryStatistics().sessionUsage;
    const buffer = sessions.allocate(CLIENT_B, 4000);
    expect(sessions.getMemoryStatistics().sessionUsage - before).toBeGreaterThanOrEqual(4000);
    sessions.release(buffer);
  });
});

describe('getClientMemoryUsage', () => {
  test('gives each client its session usage', () => {
    expect(manager.getClientMemoryUsage().get(CLIENT_A)).toBe(sessions.getSessionMemoryUsage(CLIENT_A));
  });

  test('is a Map', () => {
    expect(manager.getClientMemoryUsage()).toBeInstanceOf(Map);
  });
});

describe('getBackendInfo', () => {
  test('names tcmalloc or system', () => {
    expect(['tcmalloc', 'system']).toContain(manager.getBackendInfo().name);
  });
});
