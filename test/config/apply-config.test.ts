import { resolve } from 'node:path';

import pino from 'pino';
import type { Logger } from 'pino';

import { GlobalSessionManager, MqttAllocatorError } from '../../lib';
import { applyConfig } from '../../lib/config/apply-config';
import { defaultConfig, loadConfig } from '../../lib/config/load-config';
import type { SessionAllocatorConfig } from '../../lib/config/load-config';

const KiB = 1024;
const MiB = 1024 ** 2;

const manager = GlobalSessionManager.instance();
const threads = manager.getThreadManager();

// The addon's state is process-wide and other test files run in the same
// process, so every client id here is unique to this run and every setting
// is put back after each test.
const runId = `apply-${process.pid}-${Date.now()}`;
let idCount = 0;
function uniqueId(label: string): string {
  idCount += 1;
  return `${runId}-${label}-${idCount}`;
}

interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

let logLines: LogLine[];
let originalLogger: Logger;
const originalExpiry = manager.getDefaultSessionExpiry();
const registered: string[] = [];
const liveBuffers: Buffer[] = [];

beforeEach(() => {
  logLines = [];
  originalLogger = manager.logger;
  manager.setLogger(
    pino({ level: 'debug' }, { write: (line: string) => logLines.push(JSON.parse(line) as LogLine) }),
  );
});

afterEach(() => {
  for (const buffer of liveBuffers.splice(0)) {
    threads.release(buffer);
  }
  for (const id of registered.splice(0)) {
    threads.unregisterSession(id);
  }
  manager.setGlobalMemoryLimit(0);
  manager.setThreadMemoryLimit(0);
  manager.setDefaultClientMemoryLimit(0);
  manager.setClientMemoryLimitPatterns([]);
  manager.setDefaultSessionExpiry(originalExpiry);
  manager.stopExpiryCleanup();
  manager.setLogger(originalLogger);
});

afterAll(() => {
  manager.cleanupExpiredAllocators();
});

/** Registers a session that afterEach() unregisters, with an expiry of 0 so that cleanup removes it. */
function register(id: string, options: { memoryLimit?: number } = {}): void {
  threads.registerSession(id, { ...options, expiryInterval: 0 });
  registered.push(id);
}

function allocate(id: string, size: number): Buffer {
  const buffer = threads.allocate(id, size);
  liveBuffers.push(buffer);
  return buffer;
}

function config(overrides: Partial<SessionAllocatorConfig>): SessionAllocatorConfig {
  return { ...defaultConfig(), backend: activeBackend(), ...overrides };
}

/** Returns the backend in use, so that tests not about backends never request a switch. */
function activeBackend(): 'tcmalloc' | 'system' {
  return manager.getBackendInfo().name;
}

describe('applyConfig limits', () => {
  test('sets every manager setting', () => {
    applyConfig(
      config({
        globalLimit: 512 * MiB,
        threadLimit: 256 * MiB,
        defaultClientLimit: 1 * MiB,
        sessionExpiry: 123,
      }),
    );

    expect(manager.getGlobalMemoryLimit()).toBe(512 * MiB);
    expect(manager.getThreadMemoryLimit()).toBe(256 * MiB);
    expect(manager.getDefaultClientMemoryLimit()).toBe(1 * MiB);
    expect(manager.getDefaultSessionExpiry()).toBe(123);
  });

  test('lowers limit of registered client', () => {
    const id = uniqueId('live');
    register(id);
    allocate(id, 8 * KiB);

    applyConfig(config({ clientLimits: [{ match: id, exact: true, limit: 4 * KiB }] }));

    expect(manager.getClientMemoryLimit(id)).toBe(4 * KiB);
    expect(manager.isClientMemoryLimitExceeded(id)).toBe(true);
    expect(() => threads.allocate(id, 16)).toThrow(MqttAllocatorError);
    expect(() => threads.allocate(id, 16)).toThrow(expect.objectContaining({ code: 'MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED' }));
  });

  test('raises limit of registered client', () => {
    const id = uniqueId('raise');
    register(id, { memoryLimit: 4 * KiB });
    expect(threads.tryAllocate(id, 8 * KiB)).toBeUndefined();

    applyConfig(config({ clientLimits: [{ match: id, exact: true, limit: 64 * KiB }] }));

    expect(manager.getClientMemoryLimit(id)).toBe(64 * KiB);
    expect(allocate(id, 8 * KiB).length).toBe(8 * KiB);
    expect(manager.isClientMemoryLimitExceeded(id)).toBe(false);
  });

  test('global limit applies at once', () => {
    const id = uniqueId('global');
    register(id);
    const usage = manager.getGlobalMemoryUsage();

    applyConfig(config({ globalLimit: usage + 64 * KiB }));

    expect(threads.tryAllocate(id, 128 * KiB)).toBeUndefined();
    expect(allocate(id, 16 * KiB).length).toBe(16 * KiB);
  });

  test('patterns apply to new clients', () => {
    const prefix = uniqueId('sensor');
    applyConfig(
      config({
        defaultClientLimit: 3 * KiB,
        clientLimits: [
          { match: `${prefix}-special`, exact: true, limit: 100 * KiB },
          { match: `${prefix}-1?`, exact: false, limit: 10 * KiB },
          { match: `${prefix}-*`, exact: false, limit: 20 * KiB },
        ],
      }),
    );

    const unmatched = uniqueId('other');
    register(`${prefix}-special`);
    register(`${prefix}-12`);
    register(`${prefix}-123`);
    register(`${prefix}-x`);
    register(unmatched);

    expect(manager.getClientMemoryLimit(`${prefix}-special`)).toBe(100 * KiB);
    expect(manager.getClientMemoryLimit(`${prefix}-12`)).toBe(10 * KiB);
    expect(manager.getClientMemoryLimit(`${prefix}-123`)).toBe(20 * KiB);
    expect(manager.getClientMemoryLimit(`${prefix}-x`)).toBe(20 * KiB);
    expect(manager.getClientMemoryLimit(unmatched)).toBe(3 * KiB);
  });

  test('patterns reapplied to registered clients', () => {
    const prefix = uniqueId('reapply');
    const id = `${prefix}-a`;
    register(id);
    expect(manager.getClientMemoryLimit(id)).toBe(0);

    applyConfig(config({ clientLimits: [{ match: `${prefix}-*`, exact: false, limit: 32 * KiB }] }));

    expect(manager.getClientMemoryLimit(id)).toBe(32 * KiB);
  });

  test('exact id wins over pattern', () => {
    const prefix = uniqueId('exact');
    const id = `${prefix}-gateway`;
    applyConfig(
      config({
        clientLimits: [
          { match: id, exact: true, limit: 16 * KiB },
          { match: `${prefix}-*`, exact: false, limit: 1 * KiB },
        ],
      }),
    );
    register(id);

    expect(manager.getClientMemoryLimit(id)).toBe(16 * KiB);
  });

  test('invalid config changes nothing', () => {
    manager.setGlobalMemoryLimit(5 * MiB);
    const invalid = [
      config({ globalLimit: 1 * MiB, clientLimits: [{ match: 'x', exact: true, limit: -1 }] }),
      config({ globalLimit: 1 * MiB, sessionExpiry: 1.5 }),
      config({ globalLimit: 1 * MiB, cleanupInterval: 2 ** 31 }),
      config({ globalLimit: 1 * MiB, backend: 'jemalloc' as 'auto' }),
      config({ globalLimit: 1 * MiB, clientLimits: [{ match: '', exact: true, limit: 1 }] }),
    ];

    for (const candidate of invalid) {
      expect(() => applyConfig(candidate)).toThrow(expect.objectContaining({ code: 'MQ_ERR_INVALID_ARGS' }));
    }
    expect(manager.getGlobalMemoryLimit()).toBe(5 * MiB);
  });

  test('error names invalid field', () => {
    expect(() => applyConfig(config({ threadLimit: -5 }))).toThrow('config.threadLimit');
    expect(() =>
      applyConfig(config({ clientLimits: [{ match: 'a', exact: true, limit: 1 }, { match: 'b', exact: false, limit: 0.5 }] })),
    ).toThrow('config.clientLimits[1].limit');
  });
});

describe('applyConfig reports changes', () => {
  test('returns and logs changed settings', () => {
    const id = uniqueId('changes');
    applyConfig(config({ globalLimit: 1 * MiB }));
    logLines = [];

    const changes = applyConfig(
      config({ globalLimit: 2 * MiB, clientLimits: [{ match: id, exact: true, limit: 5 * KiB }] }),
    );

    expect(changes).toContainEqual({ setting: 'globalLimit', from: 1 * MiB, to: 2 * MiB });
    expect(changes).toContainEqual({ setting: 'clientLimit', clientId: id, from: 0, to: 5 * KiB });
    expect(changes.find((change) => change.setting === 'threadLimit')).toBeUndefined();

    const applied = logLines.filter((line) => line.msg === 'memory configuration applied');
    expect(applied).toHaveLength(1);
    expect(applied[0]?.level).toBe(30);
    expect(applied[0]?.changes).toContainEqual({ setting: 'globalLimit', from: 1 * MiB, to: 2 * MiB });
    expect(applied[0]?.clientLimits).toEqual([{ setting: 'clientLimit', clientId: id, from: 0, to: 5 * KiB }]);
  });

  test('second identical apply changes nothing', () => {
    const same = config({ globalLimit: 3 * MiB, clientLimits: [{ match: uniqueId('same'), exact: true, limit: 1 }] });
    applyConfig(same);
    logLines = [];

    expect(applyConfig(same)).toEqual([]);
    expect(logLines.some((line) => line.msg === 'memory configuration applied')).toBe(false);
  });

  test('dropped client id falls back', () => {
    const id = uniqueId('dropped');
    const threads = GlobalSessionManager.instance().getThreadManager();
    applyConfig(config({ defaultClientLimit: 3 * KiB, clientLimits: [{ match: id, exact: true, limit: 7 * KiB }] }));
    threads.registerSession(id);
    expect(GlobalSessionManager.instance().getClientMemoryLimit(id)).toBe(7 * KiB);

    const changes = applyConfig(config({ defaultClientLimit: 3 * KiB, clientLimits: [] }));

    expect(changes).toContainEqual({ setting: 'clientLimit', clientId: id, from: 7 * KiB, to: undefined });
    expect(GlobalSessionManager.instance().getClientMemoryLimit(id)).toBe(3 * KiB);
    threads.sessionAllocators.cleanupSessionAllocators(id);
  });

  test('many client changes logged compactly', () => {
    const rules = Array.from({ length: 50 }, () => ({ match: uniqueId('many'), exact: true, limit: 1 * KiB }));

    const changes = applyConfig(config({ clientLimits: rules }));

    expect(changes.filter((change) => change.setting === 'clientLimit')).toHaveLength(50);
    const applied = logLines.find((line) => line.msg === 'memory configuration applied');
    expect(applied?.clientLimits).toHaveLength(20);
    expect(applied?.otherClientLimits).toBe(30);
  });
});

describe('applyConfig backend', () => {
  test('same backend not selected again', () => {
    const select = jest.spyOn(manager, 'selectBackend');
    try {
      applyConfig(config({ backend: activeBackend() }));
      expect(select).not.toHaveBeenCalled();
    } finally {
      select.mockRestore();
    }
  });

  test('auto keeps tcmalloc', () => {
    if (activeBackend() !== 'tcmalloc') {
      // The case exists only where tcmalloc could be loaded.
      return;
    }
    const select = jest.spyOn(manager, 'selectBackend');
    try {
      applyConfig(config({ backend: 'auto' }));
      expect(select).not.toHaveBeenCalled();
    } finally {
      select.mockRestore();
    }
  });

  test('switch with live blocks only warns', () => {
    const id = uniqueId('backend');
    register(id);
    allocate(id, 1 * KiB);
    const before = activeBackend();
    const other = before === 'tcmalloc' ? 'system' : 'tcmalloc';

    const changes = applyConfig(config({ backend: other, globalLimit: 9 * MiB }));

    expect(activeBackend()).toBe(before);
    expect(changes.find((change) => change.setting === 'backend')).toBeUndefined();
    expect(manager.getGlobalMemoryLimit()).toBe(9 * MiB);
    const warning = logLines.find((line) => line.level === 40 && line.requested === other);
    expect(warning?.msg).toContain('blocks are already allocated');
  });
});

describe('applyConfig expiry cleanup', () => {
  afterEach(() => {
    jest.useRealTimers();
  });

  test('interval starts and 0 stops', () => {
    jest.useFakeTimers();
    const cleanup = jest.spyOn(manager, 'cleanupExpiredAllocators');
    try {
      applyConfig(config({ cleanupInterval: 2 }));

      jest.advanceTimersByTime(1999);
      expect(cleanup).toHaveBeenCalledTimes(0);
      jest.advanceTimersByTime(1);
      expect(cleanup).toHaveBeenCalledTimes(1);
      jest.advanceTimersByTime(2000);
      expect(cleanup).toHaveBeenCalledTimes(2);

      applyConfig(config({ cleanupInterval: 0 }));
      jest.advanceTimersByTime(60_000);
      expect(cleanup).toHaveBeenCalledTimes(2);
    } finally {
      cleanup.mockRestore();
    }
  });
});

describe('loadConfig and applyConfig together', () => {
  test('sample file applies', () => {
    const loaded = loadConfig(resolve(__dirname, '../../mqtts.yaml'), {});
    // Exact limits cannot be removed again and would outlive this file, so
    // only the sample's patterns are applied.
    const patternsOnly = loaded.clientLimits.filter((rule) => !rule.exact);
    const sensor = `sensor-${uniqueId('sample')}`;

    applyConfig({ ...loaded, backend: activeBackend(), clientLimits: patternsOnly });
    register(sensor);

    expect(manager.getGlobalMemoryLimit()).toBe(512 * MiB);
    expect(manager.getDefaultClientMemoryLimit()).toBe(1 * MiB);
    expect(manager.getClientMemoryLimit(sensor)).toBe(256 * KiB);
    expect(manager.getDefaultSessionExpiry()).toBe(300);
  });
});
