// Invalid arguments: each is refused with MQ_ERR_INVALID_ARGS naming the
// value, before anything is charged or changed.
import { GlobalSessionManager, MqttAllocatorError } from '../lib';
import { settle, thrown } from './helpers/memory';

const manager = GlobalSessionManager.instance();
const sessions = manager.getThreadManager();
const CLIENT = 'errors-client';

/** Bad byte counts and how the message names each. */
const badSizes: Array<[unknown, string]> = [
  [-1, '-1'],
  [-4096, '-4096'],
  [Number.NaN, 'NaN'],
  [Number.POSITIVE_INFINITY, 'Infinity'],
  [Number.NEGATIVE_INFINITY, '-Infinity'],
  [1.5, '1.5'],
  [0.1, '0.1'],
  [2 ** 53, '9007199254740992'],
  [Number.MAX_VALUE, '1.7976931348623157e+308'],
  ['64', '"64"'],
  [null, 'null'],
  [10n, '10n'],
  [true, 'true'],
  [[64], 'array'],
  [{ size: 64 }, 'object'],
];

const badIds: Array<[unknown, string]> = [
  ['', '""'],
  [42, '42'],
  [null, 'null'],
  [{}, 'object'],
  [['id'], 'array'],
  [Symbol('id'), 'Symbol(id)'],
];

let liveBuffer: Buffer;

beforeAll(() => {
  sessions.registerSession(CLIENT, { memoryLimit: 0, expiryInterval: 0 });
  liveBuffer = sessions.allocate(CLIENT, 100);
});

afterAll(async () => {
  sessions.release(liveBuffer);
  await settle();
  sessions.sessionAllocators.cleanupSessionAllocators(CLIENT);
});

/** Usage figures that no refused call may change. */
function snapshot(): unknown {
  return {
    global: manager.getGlobalMemoryUsage(),
    client: sessions.getSessionMemoryUsage(CLIENT),
    stats: sessions.getMemoryStatistics(),
    tags: manager.getTagUsage(),
  };
}

interface Case {
  name: string;
  call: (value: unknown) => unknown;
  values: Array<[unknown, string]>;
}

const cases: Case[] = [
  { name: 'allocate size', call: (v) => sessions.allocate(CLIENT, v as number), values: badSizes },
  { name: 'tryAllocate size', call: (v) => sessions.tryAllocate(CLIENT, v as number), values: badSizes },
  { name: 'allocateCache size', call: (v) => sessions.allocateCache(v as number), values: badSizes },
  { name: 'allocate clientId', call: (v) => sessions.allocate(v as string, 10), values: badIds },
  {
    name: 'allocate component',
    call: (v) => sessions.allocate(CLIENT, 10, v as 'session'),
    values: [
      ['sessions', '"sessions"'],
      ['Queue', '"Queue"'],
      ['', '""'],
      ['cache', '"cache"'],
      [null, 'null'],
      [1, '1'],
    ],
  },
  { name: 'registerSession clientId', call: (v) => sessions.registerSession(v as string), values: badIds },
  {
    name: 'registerSession memoryLimit',
    call: (v) => sessions.registerSession('errors-unregistered', { memoryLimit: v as number }),
    values: badSizes,
  },
  {
    name: 'registerSession expiryInterval',
    call: (v) => sessions.registerSession('errors-unregistered', { expiryInterval: v as number }),
    values: [...badSizes, [2 ** 32, '4294967296']],
  },
  {
    name: 'registerSession options',
    call: (v) => sessions.registerSession('errors-unregistered', v as object),
    values: [
      [null, 'null'],
      ['fast', '"fast"'],
      [5, '5'],
    ],
  },
  { name: 'unregisterSession clientId', call: (v) => sessions.unregisterSession(v as string), values: badIds },
  { name: 'setClientMemoryLimit clientId', call: (v) => manager.setClientMemoryLimit(v as string, 10), values: badIds },
  { name: 'setClientMemoryLimit bytes', call: (v) => manager.setClientMemoryLimit(CLIENT, v as number), values: badSizes },
  { name: 'getClientMemoryLimit clientId', call: (v) => manager.getClientMemoryLimit(v as string), values: badIds },
  { name: 'setGlobalMemoryLimit bytes', call: (v) => manager.setGlobalMemoryLimit(v as number), values: badSizes },
  { name: 'setThreadMemoryLimit bytes', call: (v) => manager.setThreadMemoryLimit(v as number), values: badSizes },
  {
    name: 'isClientMemoryLimitExceeded clientId',
    call: (v) => manager.isClientMemoryLimitExceeded(v as string),
    values: badIds,
  },
  {
    name: 'getSessionAllocator limit',
    call: (v) => sessions.sessionAllocators.getSessionAllocator(CLIENT, v as number),
    values: badSizes,
  },
  {
    name: 'AllocatorHandle.allocate size',
    call: (v) => sessions.sessionAllocators.getSessionAllocator(CLIENT).allocate(v as number),
    values: badSizes,
  },
  {
    name: 'AllocatorHandle.limit',
    call: (v) => {
      sessions.sessionAllocators.getSessionAllocator(CLIENT).limit = v as number;
    },
    values: badSizes,
  },
  {
    name: 'createSessionQueue maxBytes',
    call: (v) => sessions.createSessionQueue(CLIENT, { overflow: 'reject', maxBytes: v as number }),
    values: badSizes,
  },
  {
    name: 'createSessionQueue overflow',
    call: (v) => sessions.createSessionQueue(CLIENT, { overflow: v as 'reject' }),
    values: [
      ['drop-newest', '"drop-newest"'],
      [undefined, 'undefined'],
      ['', '""'],
    ],
  },
];

const rows = cases.flatMap((entry) =>
  entry.values.map(([value, shown]): [string, string, Case, unknown, string] => [entry.name, shown, entry, value, shown]),
);

describe.each(rows)('%s %s', (_name, _shown, entry, value, shown) => {
  let before: unknown;
  let error: MqttAllocatorError;

  beforeAll(() => {
    before = snapshot();
    error = thrown(() => entry.call(value));
  });

  test('throws MqttAllocatorError', () => {
    expect(error).toBeInstanceOf(MqttAllocatorError);
  });

  test('has code MQ_ERR_INVALID_ARGS', () => {
    expect(error.code).toBe('MQ_ERR_INVALID_ARGS');
  });

  test('has errno -800', () => {
    expect(error.errno).toBe(-800);
  });

  test('names the value', () => {
    expect(error.message).toContain(shown);
  });

  test('charges nothing', () => {
    expect(snapshot()).toEqual(before);
  });
});

describe('rejected calls change no setting', () => {
  test('global limit', () => {
    const before = manager.getGlobalMemoryLimit();
    thrown(() => manager.setGlobalMemoryLimit(-1));
    expect(manager.getGlobalMemoryLimit()).toBe(before);
  });

  test('thread limit', () => {
    const before = manager.getThreadMemoryLimit();
    thrown(() => manager.setThreadMemoryLimit(Number.NaN));
    expect(manager.getThreadMemoryLimit()).toBe(before);
  });

  test('client limit', () => {
    manager.setClientMemoryLimit(CLIENT, 0);
    thrown(() => manager.setClientMemoryLimit(CLIENT, 1.5));
    expect(manager.getClientMemoryLimit(CLIENT)).toBe(0);
  });

  test('no session is registered', () => {
    thrown(() => sessions.registerSession('errors-unregistered', { memoryLimit: -1 }));
    expect(sessions.hasSession('errors-unregistered')).toBe(false);
  });

  test('no limit is recorded for the client', () => {
    thrown(() => sessions.registerSession('errors-unregistered', { memoryLimit: 10, expiryInterval: -1 }));
    expect(manager.getClientMemoryLimit('errors-unregistered')).toBe(manager.getDefaultClientMemoryLimit());
  });
});

describe('MqttAllocatorError', () => {
  test('has the name MqttAllocatorError', () => {
    expect(new MqttAllocatorError('MQ_ERR_ALLOCATOR', 'x').name).toBe('MqttAllocatorError');
  });

  test('takes errno from the code', () => {
    expect(new MqttAllocatorError('MQ_ERR_ALLOCATOR_HIERARCHY', 'x').errno).toBe(-707);
  });

  test('keeps the context fields', () => {
    const error = new MqttAllocatorError('MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED', 'x', {
      clientId: 'c',
      tag: 'SESSION',
      requested: 1,
      usage: 2,
      limit: 3,
    });
    expect(error).toMatchObject({ clientId: 'c', tag: 'SESSION', requested: 1, usage: 2, limit: 3 });
  });

  test('leaves absent context fields unset', () => {
    expect(Object.keys(new MqttAllocatorError('MQ_ERR_ALLOCATOR', 'x', { clientId: undefined }))).not.toContain(
      'clientId',
    );
  });

  test('has a stack', () => {
    expect(thrown(() => sessions.allocate(CLIENT, -1)).stack).toContain('errors.test.ts');
  });

  test('an undefined value is named once', () => {
    expect(thrown(() => sessions.allocate(CLIENT, undefined as unknown as number)).message).toContain(
      'invalid size: undefined; expected',
    );
  });
});
