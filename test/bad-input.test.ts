// Invalid input to the exported functions and options that test/errors.test.ts
// does not cover: every call is rejected with the module's error for it
// (MQ_ERR_INVALID_ARGS naming the value, or ConfigError for configuration
// read from a file or the environment), and no usage, limit, setting or
// session count changes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Registry } from 'prom-client';

import {
  applyConfig,
  ConfigError,
  createBoundedPersistence,
  defaultConfig,
  GlobalSessionManager,
  loadConfig,
  MqttAllocatorError,
  registerPrometheusMetrics,
  SessionAllocatorConfig,
  SessionQueue,
} from '../lib';
import { thrownBy } from './helpers/errors';
import { settle } from './helpers/memory';

const manager = GlobalSessionManager.instance();
const sessions = manager.getThreadManager();
const allocators = sessions.sessionAllocators;
const CLIENT = 'bad-input-client';
// An id only the patterns can give a limit to, to see that a refused
// setClientMemoryLimitPatterns call changed none of them.
const PATTERN_PROBE = 'bad-input-pattern-probe';

const LONE_HIGH = 'id-\ud800';
const LONE_LOW = '\udc00-id';
// 65,536 bytes of UTF-8: one more than an MQTT string can carry.
const TOO_LONG = 'x'.repeat(65_536);
const TOO_LONG_MULTIBYTE = 'é'.repeat(32_768);

const badIds: Array<[unknown, string]> = [
  ['', '""'],
  [7, '7'],
  [null, 'null'],
  [undefined, 'undefined'],
  [{}, 'object'],
  [LONE_HIGH, JSON.stringify(LONE_HIGH)],
  [LONE_LOW, JSON.stringify(LONE_LOW)],
  [TOO_LONG, '65536 characters'],
  [TOO_LONG_MULTIBYTE, '32768 characters'],
];

const badBytes: Array<[unknown, string]> = [
  [-1, '-1'],
  [Number.NaN, 'NaN'],
  [Number.POSITIVE_INFINITY, 'Infinity'],
  [2.5, '2.5'],
  [2 ** 53, '9007199254740992'],
  ['100', '"100"'],
  [null, 'null'],
  [5n, '5n'],
];

const badSeconds: Array<[unknown, string]> = [
  [-1, '-1'],
  [0.5, '0.5'],
  [2 ** 32, '4294967296'],
  [Number.NaN, 'NaN'],
  ['60', '"60"'],
  [null, 'null'],
];

let handle: ReturnType<typeof allocators.getSessionAllocator>;
let queue: SessionQueue;
let liveBuffer: Buffer;

beforeAll(async () => {
  await settle();
  sessions.registerSession(CLIENT, { memoryLimit: 100_000, expiryInterval: 0 });
  handle = allocators.getSessionAllocator(CLIENT);
  queue = sessions.createSessionQueue(CLIENT, { overflow: 'reject', maxMessages: 5 });
  queue.push('held');
  liveBuffer = sessions.allocate(CLIENT, 64, 'worker');
});

afterAll(() => {
  queue.clear();
  sessions.release(liveBuffer);
  allocators.cleanupSessionAllocators(CLIENT);
  manager.clearClientMemoryLimit(CLIENT);
});

/** Returns everything a rejected call must leave unchanged. */
function snapshot(): unknown {
  return {
    global: manager.getGlobalMemoryUsage(),
    tags: manager.getTagUsage(),
    stats: sessions.getMemoryStatistics(),
    clients: [...manager.getClientMemoryUsage().entries()].sort(),
    limits: {
      global: manager.getGlobalMemoryLimit(),
      thread: manager.getThreadMemoryLimit(),
      defaultClient: manager.getDefaultClientMemoryLimit(),
      client: manager.getClientMemoryLimit(CLIENT),
      pattern: manager.getClientMemoryLimit(PATTERN_PROBE),
      handle: handle.limit,
    },
    expiry: manager.getDefaultSessionExpiry(),
    backend: manager.getBackendInfo().name,
    children: handle.children().map((child) => child.id),
    queue: [queue.length, queue.bytes],
  };
}

/** Returns an empty view whose memory was transferred away, as a released
 * Buffer's is. */
function detachedView(): Uint8Array {
  const view = new Uint8Array(16);
  structuredClone(view.buffer, { transfer: [view.buffer] });
  return view;
}

interface Case {
  name: string;
  call: (value: unknown) => unknown;
  values: Array<[unknown, string]>;
}

const invalidArgumentCases: Case[] = [
  // GlobalSessionManager
  { name: 'clearClientMemoryLimit clientId', call: (v) => manager.clearClientMemoryLimit(v as string), values: badIds },
  { name: 'getClientMemoryLimit clientId', call: (v) => manager.getClientMemoryLimit(v as string), values: badIds.slice(5) },
  { name: 'setClientMemoryLimit clientId', call: (v) => manager.setClientMemoryLimit(v as string, 10), values: badIds.slice(5) },
  {
    name: 'isClientMemoryLimitExceeded clientId',
    call: (v) => manager.isClientMemoryLimitExceeded(v as string),
    values: badIds.slice(5),
  },
  { name: 'setDefaultClientMemoryLimit bytes', call: (v) => manager.setDefaultClientMemoryLimit(v as number), values: badBytes },
  { name: 'setDefaultSessionExpiry seconds', call: (v) => manager.setDefaultSessionExpiry(v as number), values: badSeconds },
  {
    name: 'startExpiryCleanup intervalSeconds',
    call: (v) => manager.startExpiryCleanup(v as number),
    values: [...badSeconds.filter(([value]) => value !== 2 ** 32), [2 ** 31, '2147483648']],
  },
  {
    name: 'setLogger logger',
    call: (v) => manager.setLogger(v as never),
    values: [
      [null, 'null'],
      ['info', '"info"'],
      [{}, 'object'],
      [{ warn: () => undefined }, 'debug, info, warn and error'],
    ],
  },
  {
    name: 'setClientMemoryLimitPatterns patterns',
    call: (v) => manager.setClientMemoryLimitPatterns(v as never),
    values: [
      ['bad-input-*', '"bad-input-*"'],
      [null, 'null'],
      [{ pattern: 'bad-input-*', limit: 1 }, 'object'],
      [[{ pattern: 'bad-input-*', limit: 1 }, null], 'patterns[1]'],
      [[{ pattern: 'bad-input-*', limit: 1 }, { pattern: '', limit: 1 }], 'patterns[1].pattern'],
      [[{ pattern: 'bad-input-*', limit: 1 }, { pattern: 'b*', limit: -1 }], 'patterns[1].limit'],
      [[{ pattern: 7, limit: 1 }], 'patterns[0].pattern'],
      [[{ pattern: 'bad-input-*', limit: 1, x: 1 }], 'patterns[0] key "x"'],
    ],
  },
  // ThreadLocalSessionManager
  { name: 'hasSession clientId', call: (v) => sessions.hasSession(v as string), values: badIds },
  ...(['loadPayload', 'takePayload', 'payloadSize', 'freePayload'] as const).map((method) => ({
    name: `${method} handle`,
    call: (v: unknown) => sessions[method](v as number),
    values: [
      ['1', '"1"'],
      [undefined, 'undefined'],
      [null, 'null'],
    ] as Array<[unknown, string]>,
  })),
  { name: 'getSessionMemoryUsage clientId', call: (v) => sessions.getSessionMemoryUsage(v as string), values: badIds },
  { name: 'hasRoomFor size', call: (v) => sessions.hasRoomFor(CLIENT, v as number), values: badBytes },
  { name: 'hasRoomFor freed', call: (v) => sessions.hasRoomFor(CLIENT, 8, v as number), values: badBytes },
  { name: 'tryAllocate clientId', call: (v) => sessions.tryAllocate(v as string, 8), values: badIds.slice(5) },
  {
    name: 'tryAllocate component',
    call: (v) => sessions.tryAllocate(CLIENT, 8, v as 'session'),
    values: [
      ['cache', '"cache"'],
      ['SESSION', '"SESSION"'],
      [null, 'null'],
    ],
  },
  { name: 'registerSession clientId', call: (v) => sessions.registerSession(v as string), values: [[LONE_LOW, JSON.stringify(LONE_LOW)], [TOO_LONG_MULTIBYTE, '32768 characters']] },
  {
    name: 'registerSession options',
    call: (v) => sessions.registerSession(CLIENT, v as never),
    values: [[{ memLimit: 5 }, '"memLimit"']],
  },
  { name: 'createSessionQueue clientId', call: (v) => sessions.createSessionQueue(v as string, { overflow: 'reject' }), values: badIds },
  {
    name: 'createSessionQueue options',
    call: (v) => sessions.createSessionQueue(CLIENT, v as never),
    values: [
      [null, 'null'],
      ['reject', '"reject"'],
      [{ overflow: 'reject', maxMesages: 1 }, '"maxMesages"'],
    ],
  },
  {
    name: 'createSessionQueue maxMessages',
    call: (v) => sessions.createSessionQueue(CLIENT, { overflow: 'drop-oldest', maxMessages: v as number }),
    values: badBytes,
  },
  // SessionAllocatorManager
  { name: 'getSessionAllocator clientId', call: (v) => allocators.getSessionAllocator(v as string), values: badIds },
  { name: 'getSessionQueueAllocator clientId', call: (v) => allocators.getSessionQueueAllocator(v as string), values: badIds },
  { name: 'getSessionWorkerAllocator clientId', call: (v) => allocators.getSessionWorkerAllocator(v as string), values: badIds },
  { name: 'cleanupSessionAllocators clientId', call: (v) => allocators.cleanupSessionAllocators(v as string), values: badIds },
  { name: 'getSessionMemoryUsage (allocators) clientId', call: (v) => allocators.getSessionMemoryUsage(v as string), values: badIds },
  {
    name: 'isSessionMemoryLimitExceeded clientId',
    call: (v) => allocators.isSessionMemoryLimitExceeded(v as string),
    values: badIds,
  },
  // AllocatorHandle
  { name: 'AllocatorHandle.tryAllocate size', call: (v) => handle.tryAllocate(v as number), values: badBytes },
  { name: 'AllocatorHandle.createChild id', call: (v) => handle.createChild(v as string, 'SESSION'), values: badIds.slice(0, 5) },
  {
    name: 'AllocatorHandle.createChild tag',
    call: (v) => handle.createChild('bad-input-child', v as 'SESSION'),
    values: [
      ['NOPE', '"NOPE"'],
      ['session', '"session"'],
      [99, '99'],
      [-1, '-1'],
      [1.5, '1.5'],
      [null, 'null'],
      ['toString', '"toString"'],
    ],
  },
  {
    name: 'AllocatorHandle.createChild limit',
    call: (v) => handle.createChild('bad-input-child', 'SESSION', v as number),
    values: badBytes.filter(([value]) => value !== null),
  },
  { name: 'AllocatorHandle.removeChild id', call: (v) => handle.removeChild(v as string), values: badIds.slice(0, 5) },
  // SessionQueue
  {
    name: 'SessionQueue.push payload',
    call: (v) => queue.push(v as Buffer),
    values: [
      [5, '5'],
      [null, 'null'],
      [undefined, 'undefined'],
      [[1, 2], 'array'],
      [{ length: 3 }, 'object'],
      [new ArrayBuffer(4), 'object'],
      [detachedView(), 'detached'],
    ],
  },
  {
    name: 'storePayload payload',
    call: (v) => sessions.storePayload(CLIENT, v as Uint8Array),
    values: [
      [detachedView(), 'detached'],
      ['text', '"text"'],
    ],
  },
  // applyConfig
  {
    name: 'applyConfig config',
    call: (v) => applyConfig(v as SessionAllocatorConfig),
    values: [
      [null, 'null'],
      ['mqtts.yaml', '"mqtts.yaml"'],
    ],
  },
  {
    name: 'applyConfig field',
    // The other fields differ from the current settings, so a configuration
    // applied in part before the bad field was found would show.
    call: (v) => applyConfig({ ...defaultConfig(), globalLimit: 2 ** 30, defaultClientLimit: 12_345, sessionExpiry: 77, ...(v as object) }),
    values: [
      [{ globalLimit: '1MiB' }, 'config.globalLimit'],
      [{ defaultClientLimit: Number.NaN }, 'config.defaultClientLimit'],
      [{ cleanupInterval: -1 }, 'config.cleanupInterval'],
      [{ clientLimits: 'a=1' }, 'config.clientLimits'],
      [{ clientLimits: [null] }, 'config.clientLimits[0]'],
      [{ clientLimits: [{ match: 'a', exact: 'yes', limit: 1 }] }, 'config.clientLimits[0].exact'],
      [{ clientLimits: [{ match: 5, exact: true, limit: 1 }] }, 'config.clientLimits[0].match'],
      [{ clientLimits: [{ match: LONE_HIGH, exact: true, limit: 1 }] }, JSON.stringify(LONE_HIGH)],
      [{ clientLimits: [{ match: TOO_LONG, exact: true, limit: 1 }] }, '65536 characters'],
      [{ clientLimits: [{ match: 'a', exact: true, limit: 1, y: 2 }] }, 'config.clientLimits[0] key "y"'],
      [{ defaultClientLimt: 5 }, 'config key "defaultClientLimt"'],
      [{ metrics: null }, 'config.metrics'],
      [{ metrics: { topClients: -1 } }, 'config.metrics.topClients'],
      [{ metrics: { topClients: 'abc' } }, '"abc"'],
      [{ metrics: { topClients: 1.5 } }, '1.5'],
      [{ metrics: { topClients: 20, foo: 1 } }, 'config.metrics key "foo"'],
    ],
  },
  {
    name: 'applyConfig manager',
    call: (v) => applyConfig({ ...defaultConfig(), globalLimit: 2 ** 30, defaultClientLimit: 12_345 }, v as never),
    values: [
      [{}, 'GlobalSessionManager'],
      [5, '5'],
    ],
  },
  // loadConfig
  {
    name: 'loadConfig path',
    call: (v) => loadConfig(v as string, {}),
    values: [
      [5, '5'],
      ['', '""'],
      [null, 'null'],
    ],
  },
  {
    name: 'loadConfig env',
    call: (v) => loadConfig(undefined, v as never),
    values: [
      [null, 'null'],
      ['MQTT_ALLOCATOR_BACKEND=system', '"MQTT_ALLOCATOR_BACKEND=system"'],
    ],
  },
  // registerPrometheusMetrics
  {
    name: 'registerPrometheusMetrics registry',
    call: (v) => registerPrometheusMetrics(v as never),
    values: [
      [undefined, 'undefined'],
      [null, 'null'],
      [{}, 'object'],
    ],
  },
  {
    name: 'registerPrometheusMetrics options',
    call: (v) => registerPrometheusMetrics(new Registry(), v as never),
    values: [
      [{ topClients: Number.NaN }, 'NaN'],
      [{ topClients: 2 ** 53 }, '9007199254740992'],
      [{ topclients: 5 }, '"topclients"'],
      [{ manager: {} }, 'options.manager'],
    ],
  },
  // createBoundedPersistence
  {
    name: 'createBoundedPersistence options',
    call: (v) => createBoundedPersistence(v as never),
    values: [
      [null, 'null'],
      ['drop-new', '"drop-new"'],
      [{ policy: 'drop-newest' }, '"drop-newest"'],
      [{ polciy: 'drop-oldest' }, '"polciy"'],
      [{ policy: '' }, '""'],
      [{ policy: 5 }, '5'],
      [{ clientPolicies: 'drop-new' }, '"drop-new"'],
      [{ expiryInterval: -1 }, '-1'],
      [{ expiryInterval: 2 ** 32 }, '4294967296'],
      [{ expiryCheckInterval: 0.5 }, '0.5'],
      [{ expiryCheckInterval: '5' }, '"5"'],
      // Node's timers run longer delays than 2^31 - 1 ms after 1 ms.
      [{ expiryCheckInterval: 2_147_484 }, '2147484'],
      [{ logIntervalMs: -10 }, '-10'],
      [{ logIntervalMs: Number.POSITIVE_INFINITY }, 'Infinity'],
      [{ logIntervalMs: 2 ** 31 }, '2147483648'],
      [{ persistence: null }, 'null'],
      [{ persistence: {} }, 'object'],
      [{ logger: 5 }, 'invalid logger: 5'],
      [{ logger: { warn: () => undefined } }, 'a pino logger'],
      [{ manager: {} }, 'invalid manager'],
      [{ manager: GlobalSessionManager }, 'GlobalSessionManager.instance()'],
    ],
  },
];

const rows = invalidArgumentCases.flatMap((entry) =>
  entry.values.map(([value, shown]): [string, string, Case, unknown] => [entry.name, shown, entry, value]),
);

describe.each(rows)('%s: %s', (_name, shown, entry, value) => {
  let before: unknown;
  let error: unknown;

  beforeAll(() => {
    before = snapshot();
    try {
      entry.call(value);
    } catch (caught) {
      error = caught;
    }
  });

  afterAll(() => {
    manager.stopExpiryCleanup();
  });

  test('rejects with MQ_ERR_INVALID_ARGS', () => {
    expect(error).toBeInstanceOf(MqttAllocatorError);
    expect((error as MqttAllocatorError).code).toBe('MQ_ERR_INVALID_ARGS');
  });

  test('names the value', () => {
    expect((error as Error).message).toContain(shown);
  });

  test('changes nothing', () => {
    expect(snapshot()).toEqual(before);
  });
});

describe('buffers this package did not allocate', () => {
  const foreign: Array<[string, unknown]> = [
    ['null', null],
    ['a string', 'buffer'],
    ['a plain object', { buffer: new ArrayBuffer(8) }],
    ['a Node Buffer', Buffer.alloc(16)],
    ['a pooled Buffer', Buffer.from('pooled')],
    ['a Uint8Array', new Uint8Array(8)],
    ['an ArrayBuffer', new ArrayBuffer(8)],
    ['a DataView', new DataView(new ArrayBuffer(8))],
    ['a copy of a session buffer', Buffer.from('copy')],
  ];

  test.each(foreign)('release(%s) rejects, frees nothing', (_name, value) => {
    const before = snapshot();
    let error: unknown;
    try {
      sessions.release(value as Buffer);
    } catch (caught) {
      error = caught;
    }
    expect((error as MqttAllocatorError).code).toBe('MQ_ERR_INVALID_ARGS');
    expect(snapshot()).toEqual(before);
  });

  test.each(foreign)('isSessionBuffer(%s) is false', (_name, value) => {
    expect(sessions.isSessionBuffer(value)).toBe(false);
  });

  test('a partial view of a session buffer is rejected', () => {
    // Releasing would detach the whole block, so only the whole Buffer may
    // be released; the view's release throws and frees nothing.
    const buffer = sessions.allocate(CLIENT, 32);
    const before = snapshot();
    expect(() => sessions.release(buffer.subarray(4, 8))).toThrow(expect.objectContaining({ code: 'MQ_ERR_INVALID_ARGS' }));
    expect(snapshot()).toEqual(before);
    sessions.release(buffer);
  });
});

describe('removeChild of an unknown child', () => {
  test('throws NOT_FOUND, changes nothing', () => {
    const before = snapshot();
    let error: unknown;
    try {
      handle.removeChild('bad-input-no-such-child');
    } catch (caught) {
      error = caught;
    }
    expect((error as MqttAllocatorError).code).toBe('MQ_ERR_ALLOCATOR_NOT_FOUND');
    expect(snapshot()).toEqual(before);
  });
});

describe('selectBackend', () => {
  test.each<[string, unknown]>([
    ['an unknown name', 'jemalloc'],
    ['an empty name', ''],
    ['a number', 1],
  ])('rejects %s, keeps the backend', (_name, value) => {
    const before = snapshot();
    let error: unknown;
    try {
      manager.selectBackend(value as 'auto');
    } catch (caught) {
      error = caught;
    }
    expect((error as MqttAllocatorError).code).toBe('MQ_ERR_INVALID_ARGS');
    expect(snapshot()).toEqual(before);
  });
});

describe('configuration from a file or the environment', () => {
  let folder: string;

  beforeAll(() => {
    folder = fs.mkdtempSync(path.join(os.tmpdir(), 'mqsa-bad-input-'));
    fs.writeFileSync(path.join(folder, 'empty.yaml'), 'memory: {}\n');
  });

  afterAll(() => {
    fs.rmSync(folder, { recursive: true, force: true });
  });

  function configError(action: () => unknown): ConfigError {
    return thrownBy(action, ConfigError);
  }

  test.each<[string, string, string]>([
    ['MQTT_ALLOCATOR_GLOBAL_LIMIT', '-1', '-1'],
    ['MQTT_ALLOCATOR_GLOBAL_LIMIT', '1e400', '1e400'],
    ['MQTT_ALLOCATOR_THREAD_LIMIT', '12 parsecs', '12 parsecs'],
    ['MQTT_ALLOCATOR_DEFAULT_CLIENT_LIMIT', '0x10', '0x10'],
    ['MQTT_ALLOCATOR_SESSION_EXPIRY', '4294967296', '4294967296'],
    ['MQTT_ALLOCATOR_SESSION_EXPIRY', '1.5', '1.5'],
    ['MQTT_ALLOCATOR_CLEANUP_INTERVAL', '-5', '-5'],
    ['MQTT_ALLOCATOR_BACKEND', 'jemalloc', 'jemalloc'],
  ])('%s=%s names variable and value', (name, value, shown) => {
    const error = configError(() => loadConfig(path.join(folder, 'empty.yaml'), { [name]: value }));
    expect(error.envVariable).toBe(name);
    expect(error.message).toContain(shown);
  });

  test.each<[string, string]>([
    ['a negative global limit', 'memory:\n  global_limit: -1\n'],
    ['a client limit that is not a size', 'memory:\n  client_limits:\n    "a": lots\n'],
    ['an expiry beyond MQTT 5', 'memory:\n  session_expiry: 4294967296\n'],
  ])('file with %s names the file', (_name, text) => {
    const file = path.join(folder, `config-${Math.random().toString(36).slice(2)}.yaml`);
    fs.writeFileSync(file, text);
    const error = configError(() => loadConfig(file, {}));
    expect(error.file).toBe(file);
  });

  test.each<[string, () => string]>([
    ['a missing file', () => path.join(folder, 'missing.yaml')],
    ['a folder', () => folder],
  ])('explicit path to %s is named', (_name, file) => {
    const error = configError(() => loadConfig(file(), {}));
    expect(error.message).toContain(path.basename(file()));
  });
});

describe('timer options', () => {
  test.each<[string, object, string]>([
    ['logIntervalMs', { logIntervalMs: -1 }, 'milliseconds'],
    ['expiryCheckInterval', { expiryCheckInterval: -1 }, 'seconds'],
  ])('%s names its unit', (name, options, unit) => {
    expect(() => createBoundedPersistence(options)).toThrow(new RegExp(`${name}.*integer number of ${unit} from 0 to`));
  });
});

describe('loggers', () => {
  // Any object with the four methods the package calls will do, not only pino.
  const logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

  test('persistence accepts any logger object', async () => {
    const persistence = createBoundedPersistence({ logger: logger as never });
    await persistence.destroy();
  });

  test('setLogger accepts any logger object', () => {
    const previous = manager.logger;
    manager.setLogger(logger as never);
    expect(manager.logger).toBe(logger);
    manager.setLogger(previous);
  });
});
