import { readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';

import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { Document, Node as YamlNode, ParsedNode } from 'yaml';

import { invalidArgument } from '../errors';
import { MAX_TIMER_SECONDS } from '../validate';
import { checkCount, checkDuration, checkSize, DURATION_EXPECTED, SIZE_EXPECTED } from './sizes';
import type { ParseResult } from './sizes';

/** Allocator backend requested by a configuration. `auto` prefers tcmalloc when it can be loaded. */
export type ConfiguredBackend = 'tcmalloc' | 'system' | 'auto';

/** A per-client limit from `memory.client_limits`. */
export interface ClientLimitRule {
  /** A client id, or a glob pattern where `*` matches any run of characters and `?` one character. */
  match: string;
  /** True for a client id, false for a pattern (a key containing `*` or `?`). */
  exact: boolean;
  /** Limit in bytes, or 0 for unlimited. */
  limit: number;
}

/** The `memory:` section of `mqtts.yaml`, with sizes in bytes and times in seconds. */
export interface SessionAllocatorConfig {
  backend: ConfiguredBackend;
  /** Limit of the process-wide root allocator, across all threads, or 0 for unlimited. */
  globalLimit: number;
  /** Limit of each thread's allocator, or 0 for unlimited. */
  threadLimit: number;
  /** Limit for clients that no entry of clientLimits matches, or 0 for unlimited. */
  defaultClientLimit: number;
  /** Client ids first, then patterns, each group in file order. The first match wins. */
  clientLimits: ClientLimitRule[];
  /** Default session expiry interval, as the MQTT 5 Session Expiry Interval. */
  sessionExpiry: number;
  /** Seconds between sweeps for expired sessions, or 0 for no sweep. */
  cleanupInterval: number;
  metrics: {
    /** Number of clients, by usage, exported with a client_id label. */
    topClients: number;
  };
}

/** File read by loadConfig() when no path is given, relative to the working directory. */
export const DEFAULT_CONFIG_FILE = 'mqtts.yaml';

/** The MQTT 5 Session Expiry Interval is a four-byte integer, and 0xFFFFFFFF means "never expires". */
const MAX_SESSION_EXPIRY = 0xffff_ffff;

/** MQTT encodes a client identifier as a UTF-8 string of at most 65,535 bytes. */
const MAX_CLIENT_ID_BYTES = 65_535;

const BACKENDS: readonly ConfiguredBackend[] = ['tcmalloc', 'system', 'auto'];
const BACKEND_EXPECTED = 'one of "tcmalloc", "system" or "auto"';
const TOP_CLIENTS_EXPECTED = 'a non-negative whole number of clients, e.g. 20';
const MAP_EXPECTED = 'a map of keys to values';
const CLIENT_LIMITS_EXPECTED = 'a map from client ids or glob patterns (with * or ?) to sizes';

/** Returns the configuration used when neither the file nor the environment sets anything. */
export function defaultConfig(): SessionAllocatorConfig {
  return {
    backend: 'auto',
    globalLimit: 0,
    threadLimit: 0,
    defaultClientLimit: 0,
    clientLimits: [],
    sessionExpiry: 300,
    cleanupInterval: 30,
    metrics: { topClients: 20 },
  };
}

/** Details of an invalid configuration value. The error message combines all of them. */
export interface ConfigErrorDetails {
  /** Absolute path of the file, unless the value came from an environment variable. */
  file?: string | undefined;
  /** Name of the environment variable the value came from. */
  envVariable?: string | undefined;
  /** 1-based position of the value in the file, when known. */
  line?: number | undefined;
  column?: number | undefined;
  /** Dotted path of the key, e.g. `memory.client_limits."sensor-*"`, or undefined for whole-file problems. */
  keyPath?: string | undefined;
  /** The rejected value as parsed from YAML or read from the environment. */
  value?: unknown;
  /** A rejected number as the file writes it, which the message quotes:
   * YAML reads numbers as doubles, so 9007199254740993 becomes ...992. */
  written?: string | undefined;
  /** Reason the value was rejected. */
  problem: string;
  /** Description of an accepted value. */
  expected: string;
}

/** Thrown by loadConfig() for an unreadable file, invalid YAML or an invalid value. */
export class ConfigError extends Error {
  readonly file: string | undefined;
  readonly envVariable: string | undefined;
  readonly line: number | undefined;
  readonly column: number | undefined;
  readonly keyPath: string | undefined;
  readonly value: unknown;
  readonly problem: string;
  readonly expected: string;

  constructor(details: ConfigErrorDetails) {
    super(formatConfigErrorMessage(details));
    this.name = 'ConfigError';
    this.file = details.file;
    this.envVariable = details.envVariable;
    this.line = details.line;
    this.column = details.column;
    this.keyPath = details.keyPath;
    this.value = details.value;
    this.problem = details.problem;
    this.expected = details.expected;
  }
}

/**
 * Loads the `memory:` section of a YAML configuration file, applies the
 * environment overrides and returns the result with sizes in bytes and times
 * in seconds. Other top-level sections of the file are left to their own
 * readers and are not checked here.
 *
 * Without `path`, `./mqtts.yaml` in the working directory is read, and all
 * defaults apply when it does not exist. A `path` that does not exist is an
 * error.
 *
 * Environment variables override the file. An unset or empty variable leaves
 * the file's value in place:
 * - `MQTT_ALLOCATOR_BACKEND`: `tcmalloc`, `system` or `auto` (memory.backend)
 * - `MQTT_ALLOCATOR_GLOBAL_LIMIT`: a size (memory.global_limit)
 * - `MQTT_ALLOCATOR_THREAD_LIMIT`: a size (memory.thread_limit)
 * - `MQTT_ALLOCATOR_DEFAULT_CLIENT_LIMIT`: a size (memory.default_client_limit)
 * - `MQTT_ALLOCATOR_SESSION_EXPIRY`: seconds (memory.session_expiry)
 * - `MQTT_ALLOCATOR_CLEANUP_INTERVAL`: seconds (memory.cleanup_interval)
 *
 * A size is a whole number of bytes or a number with a unit: `B`, `KB`, `MB`,
 * `GB` (powers of 1000) or `KiB`, `MiB`, `GiB` (powers of 1024), written with
 * that exact case, e.g. `512MiB` or `1.5 KB`.
 *
 * @throws ConfigError naming the file or variable, the key path, the value and what is expected.
 */
export function loadConfig(path?: string, env: NodeJS.ProcessEnv = process.env): SessionAllocatorConfig {
  if (path !== undefined && (typeof path !== 'string' || path === '')) {
    throw invalidArgument('path', path, 'the path of a YAML file, or nothing for ./mqtts.yaml');
  }
  if (env === null || typeof env !== 'object') {
    throw invalidArgument('env', env, 'an object of environment variables, such as process.env');
  }
  const config = defaultConfig();

  const file = resolvePath(path ?? DEFAULT_CONFIG_FILE);
  const text = readConfigFile(file, path !== undefined);
  if (text !== undefined) {
    new ConfigFileReader(file, text).readInto(config);
  }

  applyEnvironment(config, env);
  return config;
}

// ---------------------------------------------------------------------------
// Reading the file

/** Returns the file's text, or undefined when an implicit default file does not exist. */
function readConfigFile(file: string, explicit: boolean): string | undefined {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !explicit) {
      return undefined;
    }
    const problem =
      code === 'ENOENT' ? 'the file was not found' : `the file could not be read (${(err as Error).message})`;
    throw new ConfigError({ file, problem, expected: 'a readable YAML file' });
  }

  try {
    // A fatal decoder rejects invalid UTF-8 instead of replacing it with U+FFFD,
    // which would silently change client ids.
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError({ file, problem: 'the file is not valid UTF-8', expected: 'a UTF-8 encoded YAML file' });
  }
}

/** Walks the parsed YAML tree, so that positions and client ids are taken from the source as written. */
class ConfigFileReader {
  private readonly lineCounter = new LineCounter();
  private readonly document: Document.Parsed;

  constructor(
    private readonly file: string,
    text: string,
  ) {
    // Without prettyErrors the messages carry no position or code excerpt,
    // so the ConfigError adds the position in the usual file:line:column form.
    this.document = parseDocument(text, { lineCounter: this.lineCounter, prettyErrors: false, uniqueKeys: true });

    // Warnings (such as an unknown tag) are treated as errors, because the
    // loader would otherwise have to guess what a value was meant to be.
    const problem = this.document.errors[0] ?? this.document.warnings[0];
    if (problem !== undefined) {
      const position = this.lineCounter.linePos(problem.pos[0]);
      throw new ConfigError({
        file,
        line: position.line,
        column: position.col,
        problem:
          problem.code === 'MULTIPLE_DOCS'
            ? 'the file contains more than one YAML document'
            : `the file is not valid YAML (${problem.message.trim()})`,
        expected: 'a single YAML document',
      });
    }
  }

  readInto(config: SessionAllocatorConfig): void {
    const root = this.resolve(this.document.contents);
    if (isNull(root)) {
      return;
    }
    if (!isMap(root)) {
      this.fail(root, '', 'the top level is not a map', MAP_EXPECTED);
    }

    for (const { key, valueNode } of this.entries(root, '')) {
      if (key === 'memory') {
        this.readMemory(valueNode, config);
      }
    }
  }

  private readMemory(node: YamlNode | null, config: SessionAllocatorConfig): void {
    const section = this.resolve(node);
    if (isNull(section)) {
      return;
    }
    if (!isMap(section)) {
      this.fail(section, 'memory', 'the memory section is not a map', MAP_EXPECTED);
    }

    for (const { key, keyNode, valueNode } of this.entries(section, 'memory')) {
      const keyPath = joinKeyPath('memory', key);
      switch (key) {
        case 'backend':
          config.backend = this.readScalar(valueNode, keyPath, checkBackend, BACKEND_EXPECTED) as ConfiguredBackend;
          break;
        case 'global_limit':
          config.globalLimit = this.readScalar(valueNode, keyPath, checkSize, SIZE_EXPECTED);
          break;
        case 'thread_limit':
          config.threadLimit = this.readScalar(valueNode, keyPath, checkSize, SIZE_EXPECTED);
          break;
        case 'default_client_limit':
          config.defaultClientLimit = this.readScalar(valueNode, keyPath, checkSize, SIZE_EXPECTED);
          break;
        case 'client_limits':
          config.clientLimits = this.readClientLimits(valueNode, keyPath);
          break;
        case 'session_expiry':
          config.sessionExpiry = this.readScalar(valueNode, keyPath, checkSessionExpiry, DURATION_EXPECTED);
          break;
        case 'cleanup_interval':
          config.cleanupInterval = this.readScalar(valueNode, keyPath, checkCleanupInterval, DURATION_EXPECTED);
          break;
        case 'metrics':
          this.readMetrics(valueNode, config);
          break;
        default:
          this.failUnknownKey(keyNode, keyPath, key, MEMORY_KEYS);
      }
    }
  }

  private readMetrics(node: YamlNode | null, config: SessionAllocatorConfig): void {
    const section = this.resolve(node);
    if (isNull(section)) {
      return;
    }
    if (!isMap(section)) {
      this.fail(section, 'memory.metrics', 'the metrics section is not a map', MAP_EXPECTED);
    }

    for (const { key, keyNode, valueNode } of this.entries(section, 'memory.metrics')) {
      const keyPath = joinKeyPath('memory.metrics', key);
      if (key === 'top_clients') {
        config.metrics.topClients = this.readScalar(valueNode, keyPath, checkTopClients, TOP_CLIENTS_EXPECTED);
      } else {
        this.failUnknownKey(keyNode, keyPath, key, METRICS_KEYS);
      }
    }
  }

  private readClientLimits(node: YamlNode | null, keyPath: string): ClientLimitRule[] {
    const section = this.resolve(node);
    if (isNull(section)) {
      return [];
    }
    if (!isMap(section)) {
      this.fail(section, keyPath, 'client_limits is not a map', CLIENT_LIMITS_EXPECTED);
    }

    const exact: ClientLimitRule[] = [];
    const patterns: ClientLimitRule[] = [];
    const seen = new Set<string>();
    for (const { key, keyNode, valueNode } of this.entries(section, keyPath)) {
      const entryPath = joinKeyPath(keyPath, key);
      const idProblem = checkClientKey(key);
      if (idProblem !== undefined) {
        this.fail(keyNode, entryPath, idProblem, CLIENT_LIMITS_EXPECTED, key);
      }
      // Keys are compared as written, so `123` and `"123"` are the same client.
      if (seen.has(key)) {
        this.fail(keyNode, entryPath, 'the client id or pattern is listed twice', 'each client id or pattern once', key);
      }
      seen.add(key);

      const limit = this.readScalar(valueNode, entryPath, checkSize, SIZE_EXPECTED);
      if (key.includes('*') || key.includes('?')) {
        patterns.push({ match: key, exact: false, limit });
      } else {
        exact.push({ match: key, exact: true, limit });
      }
    }
    return [...exact, ...patterns];
  }

  /**
   * Returns the entries of a map with their keys as strings. A key that YAML
   * reads as a number or boolean is taken as written (`0123` stays "0123"),
   * because client ids are strings and YAML would otherwise turn `0x1F` into "31".
   */
  private *entries(
    map: YamlNode & { items: Array<{ key: unknown; value: unknown }> },
    parentPath: string,
  ): Generator<{ key: string; keyNode: YamlNode; valueNode: YamlNode | null }> {
    for (const pair of map.items) {
      const keyNode = this.resolve(pair.key as YamlNode | null);
      const valueNode = (pair.value ?? null) as YamlNode | null;
      if (isNull(keyNode)) {
        this.fail(keyNode ?? map, joinKeyPath(parentPath, ''), 'a key is empty or null', 'keys that are non-empty strings');
      }
      if (!isScalar(keyNode)) {
        this.fail(keyNode, parentPath, 'a key is a map or a list', 'keys that are strings');
      }
      const key = typeof keyNode.value === 'string' ? keyNode.value : (keyNode.source ?? String(keyNode.value));
      yield { key, keyNode, valueNode };
    }
  }

  /** Reads a scalar value and checks it, or throws a ConfigError for that key. */
  private readScalar(
    node: YamlNode | null,
    keyPath: string,
    check: (input: unknown) => ParseResult,
    expected: string,
  ): number;
  private readScalar(
    node: YamlNode | null,
    keyPath: string,
    check: (input: unknown) => StringResult,
    expected: string,
  ): string;
  private readScalar(
    node: YamlNode | null,
    keyPath: string,
    check: (input: unknown) => ParseResult | StringResult,
    expected: string,
  ): number | string {
    const resolved = this.resolve(node);
    if (isNull(resolved)) {
      this.fail(resolved, keyPath, 'the value is empty (remove the key to use the default)', expected, null);
    }
    if (!isScalar(resolved)) {
      this.fail(resolved, keyPath, `the value is ${isSeq(resolved) ? 'a list' : 'a map'}`, expected);
    }

    const result = check(resolved.value);
    if (!result.ok) {
      this.fail(resolved, keyPath, result.problem, expected);
    }
    return result.value;
  }

  private failUnknownKey(keyNode: YamlNode, keyPath: string, key: string, known: readonly string[]): never {
    const expected = `one of the keys ${known.join(', ')}`;
    this.fail(keyNode, keyPath, 'the key is unknown', expected, key);
  }

  /**
   * Throws a ConfigError positioned at `node`. `value` defaults to the node's
   * value as JavaScript.
   */
  private fail(
    node: YamlNode | null | undefined,
    keyPath: string,
    problem: string,
    expected: string,
    ...value: [unknown?]
  ): never {
    const offset = node?.range?.[0];
    const position = offset === undefined ? undefined : this.lineCounter.linePos(offset);
    const written = isScalar(node) && typeof node.value === 'number' ? node.source : undefined;
    throw new ConfigError({
      file: this.file,
      line: position?.line,
      column: position?.col,
      keyPath,
      value: value.length > 0 ? value[0] : node?.toJS(this.document),
      written,
      problem,
      expected,
    });
  }

  /** Follows an alias (`*name`) to the node it refers to. */
  private resolve(node: unknown): ParsedNode | null {
    if (node === null || node === undefined) {
      return null;
    }
    if (isAlias(node)) {
      return (node.resolve(this.document) as ParsedNode | undefined) ?? null;
    }
    return node as ParsedNode;
  }
}

const MEMORY_KEYS = [
  'backend',
  'global_limit',
  'thread_limit',
  'default_client_limit',
  'client_limits',
  'session_expiry',
  'cleanup_interval',
  'metrics',
] as const;
const METRICS_KEYS = ['top_clients'] as const;

/** True for a missing value and for YAML null (`~`, `null` or nothing after the colon). */
function isNull(node: ParsedNode | null): boolean {
  return node === null || (isScalar(node) && node.value === null);
}

// ---------------------------------------------------------------------------
// Checks shared by the file and the environment

type StringResult = { ok: true; value: string } | { ok: false; problem: string };

function checkBackend(input: unknown): StringResult {
  if (typeof input === 'string' && (BACKENDS as readonly string[]).includes(input)) {
    return { ok: true, value: input };
  }
  return { ok: false, problem: 'the backend is unknown' };
}

function checkSessionExpiry(input: unknown): ParseResult {
  return checkDuration(input, MAX_SESSION_EXPIRY);
}

function checkCleanupInterval(input: unknown): ParseResult {
  return checkDuration(input, MAX_TIMER_SECONDS);
}

function checkTopClients(input: unknown): ParseResult {
  return checkCount(input, 'clients');
}

function checkClientKey(key: string): string | undefined {
  if (key === '') {
    return 'the client id is empty';
  }
  if (!key.isWellFormed()) {
    return 'the client id contains a lone UTF-16 surrogate, which UTF-8 cannot encode';
  }
  if (key.includes('\u0000')) {
    return 'the client id contains U+0000, which MQTT forbids in strings';
  }
  if (Buffer.byteLength(key, 'utf8') > MAX_CLIENT_ID_BYTES) {
    return `the client id is longer than the ${MAX_CLIENT_ID_BYTES} bytes MQTT allows`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Environment overrides

interface EnvironmentOverride {
  variable: string;
  keyPath: string;
  expected: string;
  apply(config: SessionAllocatorConfig, raw: string): ParseResult | StringResult;
}

function sizeOverride(
  variable: string,
  keyPath: string,
  field: 'globalLimit' | 'threadLimit' | 'defaultClientLimit',
): EnvironmentOverride {
  return {
    variable,
    keyPath,
    expected: SIZE_EXPECTED,
    apply(config, raw) {
      const result = checkSize(raw);
      if (result.ok) {
        config[field] = result.value;
      }
      return result;
    },
  };
}

const ENVIRONMENT_OVERRIDES: readonly EnvironmentOverride[] = [
  {
    variable: 'MQTT_ALLOCATOR_BACKEND',
    keyPath: 'memory.backend',
    expected: BACKEND_EXPECTED,
    apply(config, raw) {
      const result = checkBackend(raw);
      if (result.ok) {
        config.backend = result.value as ConfiguredBackend;
      }
      return result;
    },
  },
  sizeOverride('MQTT_ALLOCATOR_GLOBAL_LIMIT', 'memory.global_limit', 'globalLimit'),
  sizeOverride('MQTT_ALLOCATOR_THREAD_LIMIT', 'memory.thread_limit', 'threadLimit'),
  sizeOverride('MQTT_ALLOCATOR_DEFAULT_CLIENT_LIMIT', 'memory.default_client_limit', 'defaultClientLimit'),
  {
    variable: 'MQTT_ALLOCATOR_SESSION_EXPIRY',
    keyPath: 'memory.session_expiry',
    expected: DURATION_EXPECTED,
    apply(config, raw) {
      const result = checkSessionExpiry(raw);
      if (result.ok) {
        config.sessionExpiry = result.value;
      }
      return result;
    },
  },
  {
    variable: 'MQTT_ALLOCATOR_CLEANUP_INTERVAL',
    keyPath: 'memory.cleanup_interval',
    expected: DURATION_EXPECTED,
    apply(config, raw) {
      const result = checkCleanupInterval(raw);
      if (result.ok) {
        config.cleanupInterval = result.value;
      }
      return result;
    },
  },
];

function applyEnvironment(config: SessionAllocatorConfig, env: NodeJS.ProcessEnv): void {
  for (const override of ENVIRONMENT_OVERRIDES) {
    const raw = env[override.variable];
    if (raw === undefined || raw === '') {
      continue;
    }
    const result = override.apply(config, raw);
    if (!result.ok) {
      throw new ConfigError({
        envVariable: override.variable,
        keyPath: override.keyPath,
        value: raw,
        problem: result.problem,
        expected: override.expected,
      });
    }
  }
}

// ---------------------------------------------------------------------------
// Messages

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MAX_SHOWN_VALUE_LENGTH = 200;

/** Appends a key to a dotted path, quoting keys that are not plain identifiers. */
function joinKeyPath(parent: string, key: string): string {
  const part = PLAIN_KEY.test(key) ? key : JSON.stringify(key);
  return parent === '' ? part : `${parent}.${part}`;
}

function formatConfigErrorMessage(details: ConfigErrorDetails): string {
  let message: string;
  if (details.envVariable !== undefined) {
    message = `Invalid value in environment variable ${details.envVariable}`;
    if (details.keyPath !== undefined) {
      message += `, which overrides ${details.keyPath}`;
    }
  } else {
    message = `Invalid configuration in ${details.file ?? 'the configuration file'}`;
    if (details.line !== undefined) {
      message += `:${details.line}:${details.column ?? 1}`;
    }
    if (details.keyPath !== undefined) {
      message += ` at ${details.keyPath === '' ? 'the top level' : shorten(details.keyPath)}`;
    }
  }
  message += `: ${details.problem}.`;
  if (details.written !== undefined) {
    message += ` Got ${details.written}.`;
  } else if ('value' in details) {
    message += ` Got ${showValue(details.value)}.`;
  }
  message += ` Expected ${details.expected}.`;
  return message;
}

function showValue(value: unknown): string {
  if (typeof value === 'string') {
    return shorten(JSON.stringify(value));
  }
  if (value === null || typeof value !== 'object') {
    return String(value);
  }
  return Array.isArray(value) ? 'a list' : 'a map';
}

/** Cuts long text (a client id can have 65,535 bytes) so that messages stay readable. */
function shorten(text: string): string {
  if (text.length <= MAX_SHOWN_VALUE_LENGTH) {
    return text;
  }
  return `${text.slice(0, MAX_SHOWN_VALUE_LENGTH)}… (truncated)`;
}
