import fc from 'fast-check';
import { Gauge, register as defaultRegistry, Registry } from 'prom-client';
import type { RegistryContentType } from 'prom-client';

import { GlobalSessionManager } from '../lib';
import { createBoundedPersistence } from '../lib/aedes';
import { METRIC_NAMES, registerPrometheusMetrics, selectTopClients } from '../lib/metrics';

const KiB = 1024;

const manager = GlobalSessionManager.instance();
const threads = manager.getThreadManager();

// Client ids are unique to this run because the addon's state is
// process-wide and shared with the other test files.
const runId = `metrics-${process.pid}-${Date.now()}`;
let idCount = 0;
function uniqueId(label: string): string {
  idCount += 1;
  return `${runId}-${label}-${idCount}`;
}

const registered: string[] = [];
const liveBuffers: Buffer[] = [];

function register(id: string, bytes: number): void {
  threads.registerSession(id, { expiryInterval: 0 });
  registered.push(id);
  if (bytes > 0) {
    liveBuffers.push(threads.allocate(id, bytes));
  }
}

afterEach(() => {
  for (const buffer of liveBuffers.splice(0)) {
    threads.release(buffer);
  }
  for (const id of registered.splice(0)) {
    threads.unregisterSession(id);
  }
  manager.cleanupExpiredAllocators();
  manager.setGlobalMemoryLimit(0);
});

// ---------------------------------------------------------------------------
// A strict parser for the Prometheus text format (version 0.0.4) and
// OpenMetrics, enough to read back what prom-client writes. It rejects any
// escape other than \\, \" and \n in label values, so a missing or wrong
// escape fails the test instead of being read leniently.

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface ParsedExposition {
  samples: Sample[];
  types: Map<string, string>;
}

function parseExposition(text: string): ParsedExposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();

  // Label values carry newlines only as the escape \n, so every raw line
  // feed ends a line.
  for (const line of text.split('\n')) {
    if (line === '' || line === '# EOF') {
      continue;
    }
    if (line.startsWith('#')) {
      const typeMatch = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (typeMatch !== null) {
        types.set(typeMatch[1] as string, typeMatch[2] as string);
      } else if (!line.startsWith('# HELP ')) {
        throw new Error(`unexpected comment line: ${JSON.stringify(line)}`);
      }
      continue;
    }
    samples.push(parseSampleLine(line));
  }
  return { samples, types };
}

function parseSampleLine(line: string): Sample {
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (nameMatch === null) {
    throw new Error(`no metric name in ${JSON.stringify(line)}`);
  }
  const name = nameMatch[0];
  let position = name.length;
  const labels: Record<string, string> = {};

  if (line[position] === '{') {
    position += 1;
    while (line[position] !== '}') {
      const labelMatch = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(line.slice(position));
      if (labelMatch === null) {
        throw new Error(`invalid label at ${position} in ${JSON.stringify(line)}`);
      }
      position += labelMatch[0].length;

      let value = '';
      for (;;) {
        const char = line[position];
        if (char === undefined) {
          throw new Error(`unterminated label value in ${JSON.stringify(line)}`);
        }
        position += 1;
        if (char === '"') {
          break;
        }
        if (char !== '\\') {
          value += char;
          continue;
        }
        const escaped = line[position];
        position += 1;
        if (escaped === '\\') {
          value += '\\';
        } else if (escaped === '"') {
          value += '"';
        } else if (escaped === 'n') {
          value += '\n';
        } else {
          throw new Error(`invalid escape \\${String(escaped)} in ${JSON.stringify(line)}`);
        }
      }
      labels[labelMatch[1] as string] = value;

      if (line[position] === ',') {
        position += 1;
      } else if (line[position] !== '}') {
        throw new Error(`expected , or } at ${position} in ${JSON.stringify(line)}`);
      }
    }
    position += 1;
  }

  const rest = line.slice(position);
  const valueMatch = /^ (\S+)( \d+)?$/.exec(rest);
  if (valueMatch === null) {
    throw new Error(`invalid value part ${JSON.stringify(rest)}`);
  }
  return { name, labels, value: Number(valueMatch[1]) };
}

async function scrape(registry: Registry<RegistryContentType>): Promise<ParsedExposition> {
  return parseExposition(await registry.metrics());
}

/** Orders by usage, highest first, then by client id in UTF-16 code unit order. */
function compareByUsageThenId(a: [string, number], b: [string, number]): number {
  if (a[1] !== b[1]) {
    return b[1] - a[1];
  }
  return a[0] < b[0] ? -1 : 1;
}

function samplesOf(parsed: ParsedExposition, name: string): Sample[] {
  return parsed.samples.filter((sample) => sample.name === name);
}

function valueOf(parsed: ParsedExposition, name: string, labels: Record<string, string> = {}): number | undefined {
  return samplesOf(parsed, name).find((sample) =>
    Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
  )?.value;
}

// ---------------------------------------------------------------------------

describe('registerPrometheusMetrics', () => {
  let registry: Registry;
  let unregister: () => void;

  beforeEach(() => {
    registry = new Registry();
    unregister = registerPrometheusMetrics(registry, { topClients: 1000 }).unregister;
  });

  afterEach(() => {
    unregister();
  });

  test('registers every metric with its type', async () => {
    const parsed = await scrape(registry);

    expect(Object.fromEntries(parsed.types)).toEqual({
      mqtt_session_memory_bytes: 'gauge',
      mqtt_session_global_memory_bytes: 'gauge',
      mqtt_session_global_memory_limit_bytes: 'gauge',
      mqtt_session_client_memory_bytes: 'gauge',
      mqtt_session_limit_violations_total: 'counter',
      mqtt_session_queue_dropped_total: 'counter',
      mqtt_session_backend_info: 'gauge',
      mqtt_session_backend_heap_bytes: 'gauge',
    });
  });

  test('tag usage matches manager', async () => {
    register(uniqueId('tags'), 10 * KiB);

    const parsed = await scrape(registry);
    const expected = manager.getTagUsage();

    expect(samplesOf(parsed, 'mqtt_session_memory_bytes')).toHaveLength(Object.keys(expected).length);
    for (const [tag, bytes] of Object.entries(expected)) {
      expect([tag, valueOf(parsed, 'mqtt_session_memory_bytes', { tag })]).toEqual([tag, bytes]);
    }
    expect(valueOf(parsed, 'mqtt_session_memory_bytes', { tag: 'SESSION' })).toBeGreaterThanOrEqual(10 * KiB);
  });

  test('global usage and limit match manager', async () => {
    register(uniqueId('global'), 4 * KiB);
    manager.setGlobalMemoryLimit(64 * 1024 * KiB);

    const parsed = await scrape(registry);

    expect(valueOf(parsed, 'mqtt_session_global_memory_bytes')).toBe(manager.getGlobalMemoryUsage());
    expect(valueOf(parsed, 'mqtt_session_global_memory_bytes')).toBeGreaterThanOrEqual(4 * KiB);
    expect(valueOf(parsed, 'mqtt_session_global_memory_limit_bytes')).toBe(64 * 1024 * KiB);
  });

  test('client usage matches manager', async () => {
    const ids = [uniqueId('client'), uniqueId('client'), uniqueId('client')];
    ids.forEach((id, index) => register(id, (index + 1) * 3 * KiB));

    const parsed = await scrape(registry);
    const usage = manager.getClientMemoryUsage();

    for (const id of ids) {
      const exported = valueOf(parsed, 'mqtt_session_client_memory_bytes', { client_id: id });
      expect([id, exported]).toEqual([id, usage.get(id)]);
    }
  });

  test('departed client disappears', async () => {
    const id = uniqueId('departed');
    threads.registerSession(id, { expiryInterval: 0 });
    const buffer = threads.allocate(id, 2 * KiB);
    expect(valueOf(await scrape(registry), 'mqtt_session_client_memory_bytes', { client_id: id })).toBeGreaterThan(0);

    threads.release(buffer);
    threads.unregisterSession(id);
    manager.cleanupExpiredAllocators();

    expect(valueOf(await scrape(registry), 'mqtt_session_client_memory_bytes', { client_id: id })).toBeUndefined();
  });

  test('violations follow manager count', async () => {
    const id = uniqueId('violation');
    threads.registerSession(id, { memoryLimit: 1 * KiB, expiryInterval: 0 });
    registered.push(id);
    const before = valueOf(await scrape(registry), 'mqtt_session_limit_violations_total', { tag: 'SESSION' });

    expect(threads.tryAllocate(id, 4 * KiB)).toBeUndefined();
    expect(threads.tryAllocate(id, 4 * KiB)).toBeUndefined();
    const parsed = await scrape(registry);

    expect(valueOf(parsed, 'mqtt_session_limit_violations_total', { tag: 'SESSION' })).toBe((before ?? 0) + 2);
    for (const [tag, count] of Object.entries(manager.getLimitViolations())) {
      expect([tag, valueOf(parsed, 'mqtt_session_limit_violations_total', { tag })]).toEqual([tag, count]);
    }
  });

  test('queue drops follow manager count', async () => {
    const id = uniqueId('queue-drops');
    threads.registerSession(id, { memoryLimit: 0, expiryInterval: 0 });
    registered.push(id);
    const before = valueOf(await scrape(registry), 'mqtt_session_queue_dropped_total');
    const queue = threads.createSessionQueue(id, { overflow: 'drop-oldest', maxMessages: 1 });

    for (let i = 0; i < 4; i += 1) queue.push(Buffer.alloc(32, i));
    queue.clear();
    const parsed = await scrape(registry);

    expect(valueOf(parsed, 'mqtt_session_queue_dropped_total')).toBe((before ?? 0) + 3);
    expect(valueOf(parsed, 'mqtt_session_queue_dropped_total')).toBe(manager.getQueueDrops());
  });

  test('backend info is one series', async () => {
    const info = manager.getBackendInfo();

    const series = samplesOf(await scrape(registry), 'mqtt_session_backend_info');

    expect(series).toEqual([
      { name: 'mqtt_session_backend_info', labels: { backend: info.name, version: info.version ?? '' }, value: 1 },
    ]);
  });

  test('heap figures in snake_case', async () => {
    const heap = manager.getBackendInfo().heap ?? {};

    const series = samplesOf(await scrape(registry), 'mqtt_session_backend_heap_bytes');

    const kinds = series.map((sample) => sample.labels.kind).sort();
    const expectedKinds = Object.keys(heap)
      .map((key) => key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`))
      .sort();
    expect(kinds).toEqual(expectedKinds);
    for (const sample of series) {
      expect(sample.labels.kind).toMatch(/^[a-z]+(_[a-z]+)*$/);
      expect(Number.isInteger(sample.value)).toBe(true);
      expect(sample.value).toBeGreaterThanOrEqual(0);
    }
    if (manager.getBackendInfo().name === 'tcmalloc') {
      expect(kinds).toEqual(
        expect.arrayContaining(['current_allocated_bytes', 'heap_size', 'pageheap_free_bytes', 'thread_cache_free_bytes']),
      );
    }
  });
});

describe('client_id labels', () => {
  const hostileIds = [
    'quote"inside',
    '"',
    'back\\slash',
    'ends with backslash\\',
    '\\"',
    '\\n literal',
    'line\nfeed',
    '\n',
    'carriage\rreturn',
    'tab\there',
    'brace}comma,equals="x"',
    'label{a="b"} 1',
    '# HELP mqtt_session_client_memory_bytes fake',
    'ünïcödé',
    '客户端-1',
    '😀 emoji',
    'right-to-left \u202e text',
    'zero\u200bwidth',
    ' leading and trailing ',
  ];

  let registry: Registry;
  let unregister: () => void;

  beforeEach(() => {
    registry = new Registry();
    unregister = registerPrometheusMetrics(registry, { topClients: 10_000 }).unregister;
  });

  afterEach(() => {
    unregister();
  });

  test.each([
    ['Prometheus text', Registry.PROMETHEUS_CONTENT_TYPE],
    ['OpenMetrics', Registry.OPENMETRICS_CONTENT_TYPE],
  ] as const)('hostile ids round-trip in %s', async (_format, contentType) => {
    const formatRegistry = new Registry<RegistryContentType>();
    formatRegistry.setContentType(contentType);
    const registration = registerPrometheusMetrics(formatRegistry, { topClients: 10_000 });
    const suffix = uniqueId('');
    const ids = hostileIds.map((id) => `${id}${suffix}`);
    ids.forEach((id, index) => register(id, (index + 1) * KiB));

    const parsed = await scrape(formatRegistry);
    registration.unregister();
    const usage = manager.getClientMemoryUsage();

    for (const id of ids) {
      const matches = samplesOf(parsed, 'mqtt_session_client_memory_bytes').filter(
        (sample) => sample.labels.client_id === id,
      );
      expect([id, matches.map((sample) => sample.value)]).toEqual([id, [usage.get(id)]]);
    }
    // Hostile ids must not add lines or metrics of their own.
    expect(parsed.types.size).toBe(Object.keys(METRIC_NAMES).length);
  });

  test('id of 65535 bytes round-trips', async () => {
    const id = `${'\\"\n'.repeat(21_000)}${uniqueId('long')}`.slice(0, 65_535);
    expect(Buffer.byteLength(id)).toBeLessThanOrEqual(65_535);
    register(id, 1 * KiB);

    const parsed = await scrape(registry);

    const matches = samplesOf(parsed, 'mqtt_session_client_memory_bytes').filter((sample) => sample.labels.client_id === id);
    expect(matches).toHaveLength(1);
    expect(matches[0]?.value).toBe(manager.getClientMemoryUsage().get(id));
  });
});

describe('top clients', () => {
  test('only the N largest exported', async () => {
    const registry = new Registry();
    const { unregister } = registerPrometheusMetrics(registry, { topClients: 5 });
    try {
      const ids = Array.from({ length: 12 }, () => uniqueId('top'));
      // Sizes far above the other test files' clients, so these lead the list.
      ids.forEach((id, index) => register(id, (index + 1) * 64 * KiB));

      const parsed = await scrape(registry);
      const series = samplesOf(parsed, 'mqtt_session_client_memory_bytes');
      const expected = selectTopClients(manager.getClientMemoryUsage(), 5);

      expect(series).toHaveLength(5);
      expect(series.map((sample) => [sample.labels.client_id, sample.value])).toEqual(expected);
      expect(series.map((sample) => sample.labels.client_id)).toEqual(ids.slice(-5).reverse());
    } finally {
      unregister();
    }
  });

  test('default is 20', async () => {
    const registry = new Registry();
    const { unregister } = registerPrometheusMetrics(registry);
    try {
      Array.from({ length: 25 }, () => uniqueId('default')).forEach((id) => register(id, 1 * KiB));

      const series = samplesOf(await scrape(registry), 'mqtt_session_client_memory_bytes');

      expect(series).toHaveLength(20);
    } finally {
      unregister();
    }
  });

  test('zero exports no client series', async () => {
    const registry = new Registry();
    const { unregister } = registerPrometheusMetrics(registry, { topClients: 0 });
    try {
      register(uniqueId('zero'), 1 * KiB);

      const parsed = await scrape(registry);

      expect(samplesOf(parsed, 'mqtt_session_client_memory_bytes')).toEqual([]);
      expect(parsed.types.get('mqtt_session_client_memory_bytes')).toBe('gauge');
    } finally {
      unregister();
    }
  });

  test('selection equals full sort', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.string({ maxLength: 4 }), fc.nat({ max: 50 })), { maxLength: 200 }),
        fc.nat({ max: 30 }),
        (entries, count) => {
          const usage = new Map(entries);
          const sorted = [...usage].sort(compareByUsageThenId);

          expect(selectTopClients(usage, count)).toEqual(sorted.slice(0, count));
        },
      ),
    );
  });
});

describe('registration lifecycle', () => {
  test('unregister removes every metric', async () => {
    const registry = new Registry();
    const registration = registerPrometheusMetrics(registry);

    expect(registration.names).toEqual(Object.values(METRIC_NAMES));
    registration.unregister();

    expect((await registry.metrics()).trim()).toBe('');
    for (const name of registration.names) {
      expect(registry.getSingleMetric(name)).toBeUndefined();
    }
    expect(() => registration.unregister()).not.toThrow();
  });

  test('second registration rejected whole', () => {
    const registry = new Registry();
    const first = registerPrometheusMetrics(registry);
    try {
      const before = registry.getMetricsAsArray().length;

      expect(() => registerPrometheusMetrics(registry)).toThrow(
        'Cannot register Prometheus metric mqtt_session_memory_bytes: a metric of that name is already registered',
      );
      expect(registry.getMetricsAsArray()).toHaveLength(before);
    } finally {
      first.unregister();
    }
  });

  test('register again after unregister', async () => {
    const registry = new Registry();
    registerPrometheusMetrics(registry).unregister();

    const second = registerPrometheusMetrics(registry);

    expect((await scrape(registry)).types.size).toBe(Object.keys(METRIC_NAMES).length);
    second.unregister();
  });

  test('unregister keeps metric registered by someone else', () => {
    const registry = new Registry();
    const registration = registerPrometheusMetrics(registry);
    registry.removeSingleMetric(METRIC_NAMES.globalUsage);
    const applicationGauge = new Gauge({
      name: METRIC_NAMES.globalUsage,
      help: 'registered by the application',
      registers: [registry],
    });

    registration.unregister();

    expect(registry.getSingleMetric(METRIC_NAMES.globalUsage)).toBe(applicationGauge);
    expect(registry.getMetricsAsArray()).toHaveLength(1);
  });

  test('default registry untouched', () => {
    const before = defaultRegistry.getMetricsAsArray().length;

    const registration = registerPrometheusMetrics(new Registry());

    expect(defaultRegistry.getMetricsAsArray()).toHaveLength(before);
    registration.unregister();
  });

  test.each<[string, object]>([
    ['negative topClients', { topClients: -1 }],
    ['fractional topClients', { topClients: 1.5 }],
    ['string topClients', { topClients: '20' }],
    ['prefix', { prefix: 'my_' }],
    ['persistence that is not one', { persistence: {} }],
    ['null persistence', { persistence: null }],
  ])('rejects %s', (_name, options) => {
    const registry = new Registry();

    expect(() => registerPrometheusMetrics(registry, options as never)).toThrow(
      expect.objectContaining({ code: 'MQ_ERR_INVALID_ARGS' }),
    );
    expect(registry.getMetricsAsArray()).toHaveLength(0);
  });
});

describe('registerPrometheusMetrics with the Aedes wrapper', () => {
  test('exports its drops and stored messages', async () => {
    const persistence = createBoundedPersistence({ expiryCheckInterval: 0 });
    const registry = new Registry();
    const registration = registerPrometheusMetrics(registry, { persistence });
    try {
      const parsed = await scrape(registry);

      expect(Object.fromEntries(parsed.types)).toMatchObject({
        mqtt_session_dropped_messages_total: 'counter',
        mqtt_session_evicted_messages_total: 'counter',
        mqtt_session_overflow_disconnects_total: 'counter',
        mqtt_session_expired_sessions_total: 'counter',
        mqtt_session_stored_messages: 'gauge',
        mqtt_session_stored_bytes: 'gauge',
      });
      expect(registration.names).toContain('mqtt_session_dropped_messages_total');
      expect(valueOf(parsed, 'mqtt_session_dropped_messages_total', {})).toBe(0);
      for (const state of ['queued', 'inflight', 'incoming']) {
        expect([state, valueOf(parsed, 'mqtt_session_stored_messages', { state })]).toEqual([state, 0]);
        expect([state, valueOf(parsed, 'mqtt_session_stored_bytes', { state })]).toEqual([state, 0]);
      }
    } finally {
      registration.unregister();
      await persistence.destroy();
    }
    expect(registry.getMetricsAsArray()).toHaveLength(0);
  });
});
