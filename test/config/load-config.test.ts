import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { ConfigError, defaultConfig, loadConfig } from '../../lib/config/load-config';
import type { SessionAllocatorConfig } from '../../lib/config/load-config';
import { thrownBy } from '../helpers/errors';

const KiB = 1024;
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

let directory: string;
let fileCount = 0;

beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'mqtt-allocator-config-'));
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

/** Writes `content` to a new file in the temporary directory and returns its path. */
function writeConfig(content: string | Buffer): string {
  fileCount += 1;
  const path = join(directory, `config-${fileCount}.yaml`);
  writeFileSync(path, content);
  return path;
}

/** Loads `content` from a file with no environment overrides. */
function load(content: string): SessionAllocatorConfig {
  return loadConfig(writeConfig(content), {});
}

/** Returns the ConfigError that `action` throws, failing the test if it throws none. */
function catchConfigError(action: () => unknown): ConfigError {
  return thrownBy(action, ConfigError);
}

describe('loadConfig with valid files', () => {
  test('sample mqtts.yaml', () => {
    const config = loadConfig(resolve(__dirname, '../../mqtts.yaml'), {});

    expect(config).toEqual({
      backend: 'auto',
      globalLimit: 512 * MiB,
      threadLimit: 0,
      defaultClientLimit: 1 * MiB,
      clientLimits: [
        { match: 'gateway-01', exact: true, limit: 16 * MiB },
        { match: 'sensor-*', exact: false, limit: 256 * KiB },
      ],
      sessionExpiry: 300,
      cleanupInterval: 30,
      metrics: { topClients: 20 },
    });
  });

  test.each<[string, string]>([
    ['empty file', ''],
    ['only comments', '# nothing set\n'],
    ['empty memory section', 'memory:\n'],
    ['memory section with comments only', 'memory:\n  # global_limit: 1GiB\n'],
    ['other sections only', 'broker:\n  port: 1883\nhttp: { port: 9090 }\n'],
    ['empty nested sections', 'memory:\n  client_limits:\n  metrics:\n'],
  ])('%s gives defaults', (_name, content) => {
    expect(load(content)).toEqual(defaultConfig());
  });

  test('defaults', () => {
    expect(defaultConfig()).toEqual({
      backend: 'auto',
      globalLimit: 0,
      threadLimit: 0,
      defaultClientLimit: 0,
      clientLimits: [],
      sessionExpiry: 300,
      cleanupInterval: 30,
      metrics: { topClients: 20 },
    });
  });

  test('every key set', () => {
    const config = load(
      [
        'memory:',
        '  backend: system',
        '  global_limit: 2GB',
        '  thread_limit: 100 MiB',
        '  default_client_limit: "65536"',
        '  client_limits:',
        '    a: 1',
        '  session_expiry: 0',
        '  cleanup_interval: "0"',
        '  metrics:',
        '    top_clients: 0',
        '',
      ].join('\n'),
    );

    expect(config).toEqual({
      backend: 'system',
      globalLimit: 2_000_000_000,
      threadLimit: 100 * MiB,
      defaultClientLimit: 65536,
      clientLimits: [{ match: 'a', exact: true, limit: 1 }],
      sessionExpiry: 0,
      cleanupInterval: 0,
      metrics: { topClients: 0 },
    });
  });

  test('flow style', () => {
    const config = load('memory: { backend: tcmalloc, global_limit: 1GiB, client_limits: { x: 2KiB } }\n');

    expect(config.backend).toBe('tcmalloc');
    expect(config.globalLimit).toBe(GiB);
    expect(config.clientLimits).toEqual([{ match: 'x', exact: true, limit: 2 * KiB }]);
  });

  test('client ids before patterns, file order', () => {
    const config = load(
      [
        'memory:',
        '  client_limits:',
        '    "sensor-*": 1KiB',
        '    gateway-01: 2KiB',
        '    "dev-??": 3KiB',
        '    "*": 4KiB',
        '    gateway-02: 5KiB',
        '    "sensor-1?": 6KiB',
        '',
      ].join('\n'),
    );

    expect(config.clientLimits).toEqual([
      { match: 'gateway-01', exact: true, limit: 2 * KiB },
      { match: 'gateway-02', exact: true, limit: 5 * KiB },
      { match: 'sensor-*', exact: false, limit: 1 * KiB },
      { match: 'dev-??', exact: false, limit: 3 * KiB },
      { match: '*', exact: false, limit: 4 * KiB },
      { match: 'sensor-1?', exact: false, limit: 6 * KiB },
    ]);
  });

  test('client id keys taken as written', () => {
    const config = load(
      [
        'memory:',
        '  client_limits:',
        '    0123: 1',
        '    0x1F: 2',
        '    true: 3',
        '    1e3: 4',
        '    "quoted id with spaces": 5',
        '    ünïcödé-客户端: 6',
        '',
      ].join('\n'),
    );

    expect(config.clientLimits.map((rule) => rule.match)).toEqual([
      '0123',
      '0x1F',
      'true',
      '1e3',
      'quoted id with spaces',
      'ünïcödé-客户端',
    ]);
  });

  test('aliases resolve', () => {
    const config = load(
      ['limits:', '  small: &small 64KiB', 'memory:', '  default_client_limit: *small', '  client_limits: { a: *small }', ''].join(
        '\n',
      ),
    );

    expect(config.defaultClientLimit).toBe(64 * KiB);
    expect(config.clientLimits).toEqual([{ match: 'a', exact: true, limit: 64 * KiB }]);
  });

  test('byte-order mark ignored', () => {
    const config = loadConfig(writeConfig(Buffer.from('\uFEFFmemory:\n  global_limit: 1KiB\n', 'utf8')), {});

    expect(config.globalLimit).toBe(KiB);
  });

  test('returned objects not shared', () => {
    const first = load('');
    first.clientLimits.push({ match: 'x', exact: true, limit: 1 });
    first.metrics.topClients = 99;

    expect(load('')).toEqual(defaultConfig());
  });
});

describe('loadConfig with invalid files', () => {
  // [name, file content, key path, rejected value, text in `expected`]
  test.each<[string, string, string | undefined, unknown, string]>([
    ['unknown memory key', 'memory:\n  gloabl_limit: 1\n', 'memory.gloabl_limit', 'gloabl_limit', 'global_limit'],
    ['unknown metrics key', 'memory:\n  metrics:\n    top: 1\n', 'memory.metrics.top', 'top', 'top_clients'],
    ['negative size', 'memory:\n  global_limit: -1\n', 'memory.global_limit', -1, 'a size'],
    ['negative size string', 'memory:\n  thread_limit: "-1KiB"\n', 'memory.thread_limit', '-1KiB', 'a size'],
    ['unknown unit', 'memory:\n  global_limit: 12XB\n', 'memory.global_limit', '12XB', 'KiB, MiB, GiB'],
    ['unit in wrong case', 'memory:\n  default_client_limit: 1mib\n', 'memory.default_client_limit', '1mib', 'a size'],
    ['fractional bytes', 'memory:\n  global_limit: 1.1KiB\n', 'memory.global_limit', '1.1KiB', 'a size'],
    ['fraction without unit', 'memory:\n  global_limit: 1.5\n', 'memory.global_limit', 1.5, 'a size'],
    ['unsafe integer', 'memory:\n  global_limit: 9007199254740993\n', 'memory.global_limit', 9007199254740992, 'a size'],
    ['size too large', 'memory:\n  global_limit: 99999999999GiB\n', 'memory.global_limit', '99999999999GiB', 'a size'],
    ['infinite size', 'memory:\n  global_limit: .inf\n', 'memory.global_limit', Number.POSITIVE_INFINITY, 'a size'],
    ['NaN size', 'memory:\n  global_limit: .nan\n', 'memory.global_limit', Number.NaN, 'a size'],
    ['size as boolean', 'memory:\n  global_limit: true\n', 'memory.global_limit', true, 'a size'],
    ['size as list', 'memory:\n  global_limit: [1]\n', 'memory.global_limit', [1], 'a size'],
    ['size as map', 'memory:\n  global_limit: { bytes: 1 }\n', 'memory.global_limit', { bytes: 1 }, 'a size'],
    ['empty size', 'memory:\n  global_limit:\n', 'memory.global_limit', null, 'a size'],
    ['unknown backend', 'memory:\n  backend: jemalloc\n', 'memory.backend', 'jemalloc', '"tcmalloc", "system" or "auto"'],
    ['backend in wrong case', 'memory:\n  backend: TCMalloc\n', 'memory.backend', 'TCMalloc', '"tcmalloc"'],
    ['backend as number', 'memory:\n  backend: 1\n', 'memory.backend', 1, '"tcmalloc"'],
    ['negative expiry', 'memory:\n  session_expiry: -1\n', 'memory.session_expiry', -1, 'seconds'],
    ['fractional expiry', 'memory:\n  session_expiry: 1.5\n', 'memory.session_expiry', 1.5, 'seconds'],
    ['expiry with unit', 'memory:\n  session_expiry: 5m\n', 'memory.session_expiry', '5m', 'seconds'],
    ['expiry past MQTT range', 'memory:\n  session_expiry: 4294967296\n', 'memory.session_expiry', 4294967296, 'seconds'],
    ['interval past timer range', 'memory:\n  cleanup_interval: 2147484\n', 'memory.cleanup_interval', 2147484, 'seconds'],
    ['negative top_clients', 'memory:\n  metrics:\n    top_clients: -1\n', 'memory.metrics.top_clients', -1, 'clients'],
    ['memory as scalar', 'memory: 5\n', 'memory', 5, 'a map'],
    ['memory as list', 'memory:\n  - a\n', 'memory', ['a'], 'a map'],
    ['metrics as scalar', 'memory:\n  metrics: 20\n', 'memory.metrics', 20, 'a map'],
    ['top level list', '- memory\n', '', ['memory'], 'a map'],
    ['top level scalar', 'memory\n', '', 'memory', 'a map'],
    ['client_limits as list', 'memory:\n  client_limits: [a]\n', 'memory.client_limits', ['a'], 'client ids or glob patterns'],
    ['client limit invalid', 'memory:\n  client_limits:\n    "sensor-*": 1mb\n', 'memory.client_limits."sensor-*"', '1mb', 'a size'],
    ['client limit negative', 'memory:\n  client_limits:\n    gw: -5\n', 'memory.client_limits.gw', -5, 'a size'],
    ['client limit empty', 'memory:\n  client_limits:\n    gw:\n', 'memory.client_limits.gw', null, 'a size'],
    ['empty client id', 'memory:\n  client_limits:\n    "": 1\n', 'memory.client_limits.""', '', 'client ids'],
    ['null client id', 'memory:\n  client_limits:\n    ~: 1\n', 'memory.client_limits.""', null, 'non-empty strings'],
    ['list as key', 'memory:\n  client_limits:\n    ? [a]\n    : 1\n', 'memory.client_limits', ['a'], 'strings'],
    ['id given twice', 'memory:\n  client_limits:\n    123: 1\n    "123": 2\n', 'memory.client_limits."123"', '123', 'once'],
    ['lone surrogate id', 'memory:\n  client_limits:\n    "a\\ud800": 1\n', 'memory.client_limits."a\\ud800"', 'a\ud800', 'client ids'],
    ['id with U+0000', 'memory:\n  client_limits:\n    "a\\0b": 1\n', 'memory.client_limits."a\\u0000b"', 'a\u0000b', 'client ids'],
  ])('%s', (_name, content, keyPath, value, expected) => {
    const file = writeConfig(content);

    const error = catchConfigError(() => loadConfig(file, {}));

    expect(error.file).toBe(file);
    expect(error.envVariable).toBeUndefined();
    if (keyPath !== undefined) {
      expect(error.keyPath).toBe(keyPath);
      expect(error.message).toContain(keyPath === '' ? 'the top level' : keyPath);
    }
    expect(error.value).toEqual(value);
    expect(error.expected).toContain(expected);
    expect(error.message).toContain(file);
    expect(error.message).toContain(error.expected);
    if (typeof value === 'string' && value.length < 100) {
      expect(error.message).toContain(JSON.stringify(value));
    }
  });

  test.each<[string, string]>([
    ['9007199254740993', 'rounds to 2^53'],
    ['1.0e400', 'overflows to Infinity'],
    ['0x20000000000001', 'is hexadecimal'],
  ])('number %s, which %s, is quoted as written', (written) => {
    const file = writeConfig(`memory:\n  global_limit: ${written}\n`);

    const error = catchConfigError(() => loadConfig(file, {}));

    expect(error.keyPath).toBe('memory.global_limit');
    expect(error.message).toContain(` Got ${written}. `);
  });

  test('client id over 65535 bytes', () => {
    // YAML allows implicit keys of at most 1024 characters, so the long id is
    // written as an explicit key (`? key`).
    const longId = 'é'.repeat(32768);
    const file = writeConfig(`memory:\n  client_limits:\n    ? ${longId}\n    : 1\n`);

    const error = catchConfigError(() => loadConfig(file, {}));

    expect(error.value === longId).toBe(true);
    expect(error.problem).toBe('the client id is longer than the 65535 bytes MQTT allows');
    expect(error.line).toBe(3);
    expect(error.message.length).toBeLessThan(2000);
  });

  test('client id of 65535 bytes accepted', () => {
    const longId = `${'é'.repeat(32767)}a`;
    const config = load(`memory:\n  client_limits:\n    ? ${longId}\n    : 1\n`);

    expect(config.clientLimits).toHaveLength(1);
    expect(config.clientLimits[0]?.match === longId).toBe(true);
  });

  test.each<[string, string, string]>([
    ['bad YAML', 'memory:\n  global_limit: [1\n', 'not valid YAML'],
    ['tab indentation', 'memory:\n\tglobal_limit: 1\n', 'not valid YAML'],
    ['duplicate key', 'memory:\n  global_limit: 1\n  global_limit: 2\n', 'Map keys must be unique'],
    ['two documents', 'memory: {}\n---\nmemory: {}\n', 'more than one YAML document'],
    ['unknown tag', 'memory:\n  global_limit: !bytes 1\n', 'Unresolved tag'],
  ])('%s', (_name, content, problem) => {
    const file = writeConfig(content);

    const error = catchConfigError(() => loadConfig(file, {}));

    expect(error.file).toBe(file);
    expect(error.problem).toContain(problem);
    expect(error.line).toBeGreaterThanOrEqual(1);
    expect(error.message).toContain(`${file}:${error.line}:${error.column}`);
    expect(error.message).toContain(problem);
  });

  test('position of invalid value', () => {
    const file = writeConfig('# comment\nmemory:\n  backend: auto\n  global_limit: 12XB\n');

    const error = catchConfigError(() => loadConfig(file, {}));

    expect(error.line).toBe(4);
    expect(error.column).toBe(17);
    expect(error.message).toBe(
      `Invalid configuration in ${file}:4:17 at memory.global_limit: unknown unit "XB". ` +
        'Got "12XB". Expected a size: a non-negative whole number of bytes, or a number with one of the units ' +
        'B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), e.g. 1048576, 512KiB or 1.5 MB.',
    );
  });

  test('long value shortened in message', () => {
    const long = 'x'.repeat(5000);
    const error = catchConfigError(() => load(`memory:\n  global_limit: ${long}\n`));

    expect(error.value).toBe(long);
    expect(error.message.length).toBeLessThan(1000);
    expect(error.message).toContain('(truncated)');
  });

  test('invalid UTF-8', () => {
    const file = writeConfig(Buffer.from([0x6d, 0x3a, 0x20, 0xff, 0xfe, 0x0a]));

    const error = catchConfigError(() => loadConfig(file, {}));

    expect(error.file).toBe(file);
    expect(error.message).toContain('not valid UTF-8');
  });

  test('missing explicit file', () => {
    const file = join(directory, 'does-not-exist.yaml');

    const error = catchConfigError(() => loadConfig(file, {}));

    expect(error.file).toBe(file);
    expect(error.message).toBe(`Invalid configuration in ${file}: the file was not found. Expected a readable YAML file.`);
  });

  test('directory instead of file', () => {
    const path = join(directory, 'a-directory');
    mkdirSync(path);

    const error = catchConfigError(() => loadConfig(path, {}));

    expect(error.message).toContain(path);
    expect(error.message).toContain('could not be read');
    expect(error.message).toContain('EISDIR');
  });

  test('relative path resolved against cwd', () => {
    const error = catchConfigError(() => loadConfig('no-such-dir/mqtts.yaml', {}));

    expect(error.file).toBe(resolve(process.cwd(), 'no-such-dir/mqtts.yaml'));
  });
});

describe('loadConfig default file', () => {
  const originalCwd = process.cwd();

  afterEach(() => {
    process.chdir(originalCwd);
  });

  test('missing default file gives defaults', () => {
    const empty = mkdtempSync(join(directory, 'empty-'));
    process.chdir(empty);

    expect(loadConfig(undefined, {})).toEqual(defaultConfig());
  });

  test('default file read from cwd', () => {
    const withFile = mkdtempSync(join(directory, 'with-file-'));
    writeFileSync(join(withFile, 'mqtts.yaml'), 'memory:\n  global_limit: 3KiB\n');
    process.chdir(withFile);

    expect(loadConfig(undefined, {}).globalLimit).toBe(3 * KiB);
  });

  test('invalid default file still an error', () => {
    const withFile = mkdtempSync(join(directory, 'invalid-'));
    writeFileSync(join(withFile, 'mqtts.yaml'), 'memory:\n  global_limit: lots\n');
    process.chdir(withFile);

    const error = catchConfigError(() => loadConfig(undefined, {}));

    expect(error.file).toBe(join(process.cwd(), 'mqtts.yaml'));
  });

  test('environment applies without file', () => {
    const empty = mkdtempSync(join(directory, 'env-only-'));
    process.chdir(empty);

    const config = loadConfig(undefined, { MQTT_ALLOCATOR_DEFAULT_CLIENT_LIMIT: '2MiB' });

    expect(config.defaultClientLimit).toBe(2 * MiB);
  });
});

describe('loadConfig environment overrides', () => {
  const fileContent = [
    'memory:',
    '  backend: tcmalloc',
    '  global_limit: 1GiB',
    '  thread_limit: 512MiB',
    '  default_client_limit: 1MiB',
    '  session_expiry: 60',
    '  cleanup_interval: 10',
    '',
  ].join('\n');

  test('environment wins over file', () => {
    const config = loadConfig(writeConfig(fileContent), {
      MQTT_ALLOCATOR_BACKEND: 'system',
      MQTT_ALLOCATOR_GLOBAL_LIMIT: '2GB',
      MQTT_ALLOCATOR_THREAD_LIMIT: '0',
      MQTT_ALLOCATOR_DEFAULT_CLIENT_LIMIT: '64 KiB',
      MQTT_ALLOCATOR_SESSION_EXPIRY: '3600',
      MQTT_ALLOCATOR_CLEANUP_INTERVAL: '0',
    });

    expect(config.backend).toBe('system');
    expect(config.globalLimit).toBe(2_000_000_000);
    expect(config.threadLimit).toBe(0);
    expect(config.defaultClientLimit).toBe(64 * KiB);
    expect(config.sessionExpiry).toBe(3600);
    expect(config.cleanupInterval).toBe(0);
  });

  test('file wins over defaults', () => {
    const config = loadConfig(writeConfig(fileContent), {});

    expect(config.backend).toBe('tcmalloc');
    expect(config.globalLimit).toBe(GiB);
    expect(config.threadLimit).toBe(512 * MiB);
    expect(config.defaultClientLimit).toBe(MiB);
    expect(config.sessionExpiry).toBe(60);
    expect(config.cleanupInterval).toBe(10);
  });

  test('unset and empty variables ignored', () => {
    const config = loadConfig(writeConfig(fileContent), {
      MQTT_ALLOCATOR_GLOBAL_LIMIT: '',
      MQTT_ALLOCATOR_BACKEND: undefined,
    });

    expect(config.globalLimit).toBe(GiB);
    expect(config.backend).toBe('tcmalloc');
  });

  test('one variable overrides one key', () => {
    const config = loadConfig(writeConfig(fileContent), { MQTT_ALLOCATOR_SESSION_EXPIRY: '7' });

    expect(config.sessionExpiry).toBe(7);
    expect(config.cleanupInterval).toBe(10);
    expect(config.globalLimit).toBe(GiB);
  });

  test('unrelated variables ignored', () => {
    const config = loadConfig(writeConfig(fileContent), { MQTT_ALLOCATOR_TOP_CLIENTS: 'x', GLOBAL_LIMIT: 'x' });

    expect(config.globalLimit).toBe(GiB);
  });

  test('process.env used by default', () => {
    const saved = process.env.MQTT_ALLOCATOR_GLOBAL_LIMIT;
    process.env.MQTT_ALLOCATOR_GLOBAL_LIMIT = '5KiB';
    try {
      expect(loadConfig(writeConfig(fileContent)).globalLimit).toBe(5 * KiB);
    } finally {
      if (saved === undefined) {
        delete process.env.MQTT_ALLOCATOR_GLOBAL_LIMIT;
      } else {
        process.env.MQTT_ALLOCATOR_GLOBAL_LIMIT = saved;
      }
    }
  });

  // [variable, value, key path, text in `expected`]
  test.each<[string, string, string, string]>([
    ['MQTT_ALLOCATOR_BACKEND', 'jemalloc', 'memory.backend', '"tcmalloc", "system" or "auto"'],
    ['MQTT_ALLOCATOR_GLOBAL_LIMIT', '1 GiB ', 'memory.global_limit', 'a size'],
    ['MQTT_ALLOCATOR_GLOBAL_LIMIT', '-1', 'memory.global_limit', 'a size'],
    ['MQTT_ALLOCATOR_THREAD_LIMIT', '1.1KiB', 'memory.thread_limit', 'a size'],
    ['MQTT_ALLOCATOR_DEFAULT_CLIENT_LIMIT', '1mb', 'memory.default_client_limit', 'a size'],
    ['MQTT_ALLOCATOR_SESSION_EXPIRY', '5m', 'memory.session_expiry', 'seconds'],
    ['MQTT_ALLOCATOR_SESSION_EXPIRY', '4294967296', 'memory.session_expiry', 'seconds'],
    ['MQTT_ALLOCATOR_CLEANUP_INTERVAL', '1.5', 'memory.cleanup_interval', 'seconds'],
  ])('%s=%p rejected', (variable, value, keyPath, expected) => {
    const error = catchConfigError(() => loadConfig(writeConfig(fileContent), { [variable]: value }));

    expect(error.envVariable).toBe(variable);
    expect(error.file).toBeUndefined();
    expect(error.keyPath).toBe(keyPath);
    expect(error.value).toBe(value);
    expect(error.expected).toContain(expected);
    expect(error.message).toContain(`environment variable ${variable}`);
    expect(error.message).toContain(keyPath);
    expect(error.message).toContain(JSON.stringify(value));
  });

  test('file error reported before environment', () => {
    const file = writeConfig('memory:\n  global_limit: bad\n');

    const error = catchConfigError(() => loadConfig(file, { MQTT_ALLOCATOR_GLOBAL_LIMIT: '1KiB' }));

    expect(error.file).toBe(file);
  });
});

describe('ConfigError', () => {
  test('is an Error with name', () => {
    const error = new ConfigError({ file: '/x.yaml', keyPath: 'memory', value: 1, problem: 'it is wrong', expected: 'a map' });

    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('ConfigError');
    expect(error.message).toBe('Invalid configuration in /x.yaml at memory: it is wrong. Got 1. Expected a map.');
  });
});
