import { invalidArgument, MqttAllocatorError } from '../errors';
import { assertManager, GlobalSessionManager } from '../global-manager';
import type { BackendInfo, LimitPatternEntry } from '../global-manager';
import { assertBytes, assertClientId, assertCount, assertInterval, assertKnownOptions, assertSeconds, MAX_CLIENT_ID_BYTES } from '../validate';
import type { ClientLimitRule, ConfiguredBackend, SessionAllocatorConfig } from './load-config';

/** One setting that applyConfig() changed. */
export interface ConfigChange {
  /** Name of the SessionAllocatorConfig field, or `clientLimit` for one client id. */
  setting: string;
  /** Present for `clientLimit` changes. */
  clientId?: string;
  from: unknown;
  to: unknown;
}

/** Settings from the last applyConfig() call that the manager has no getter for. */
interface AppliedState {
  exactIds: Set<string>;
  patterns: LimitPatternEntry[];
  cleanupInterval: number;
}

// The addon's state is process-wide, but this record is per module instance,
// so each thread that calls applyConfig() compares against what it applied itself.
const appliedByManager = new WeakMap<GlobalSessionManager, AppliedState>();

/** Client limit changes listed one by one in the log line. The rest are only counted. */
const MAX_LOGGED_CLIENT_CHANGES = 20;

const BACKENDS: readonly ConfiguredBackend[] = ['tcmalloc', 'system', 'auto'];

const CONFIG_KEYS: readonly (keyof SessionAllocatorConfig)[] = [
  'backend',
  'globalLimit',
  'threadLimit',
  'defaultClientLimit',
  'clientLimits',
  'sessionExpiry',
  'cleanupInterval',
  'metrics',
];
const RULE_KEYS: readonly (keyof ClientLimitRule)[] = ['match', 'exact', 'limit'];
const METRICS_KEYS: readonly (keyof SessionAllocatorConfig['metrics'])[] = ['topClients'];

/**
 * Puts a configuration into effect, at startup or on a running process
 * (after a reload). Every value is checked before the first one is applied.
 * Limits apply at once: lowering a limit below a client's usage makes its
 * next allocations fail and frees nothing. Returns the settings that changed,
 * which are also logged at info level through `manager.logger`.
 *
 * The backend can only change while no block is allocated. On a process that
 * has already allocated, a different backend is logged as a warning and the
 * rest of the configuration is still applied.
 *
 * @throws MqttAllocatorError MQ_ERR_INVALID_ARGS naming the invalid field.
 */
export function applyConfig(
  config: SessionAllocatorConfig,
  manager: GlobalSessionManager = GlobalSessionManager.instance(),
): ConfigChange[] {
  assertManager('manager', manager);
  validateConfig(config);
  const previous = appliedByManager.get(manager);
  const changes: ConfigChange[] = [];

  applyBackend(config.backend, manager, changes);

  recordChange(changes, 'globalLimit', manager.getGlobalMemoryLimit(), config.globalLimit);
  manager.setGlobalMemoryLimit(config.globalLimit);

  recordChange(changes, 'threadLimit', manager.getThreadMemoryLimit(), config.threadLimit);
  manager.setThreadMemoryLimit(config.threadLimit);

  recordChange(changes, 'defaultClientLimit', manager.getDefaultClientMemoryLimit(), config.defaultClientLimit);
  manager.setDefaultClientMemoryLimit(config.defaultClientLimit);

  const exactIds = applyClientLimits(config.clientLimits, previous, manager, changes);

  const patterns = config.clientLimits
    .filter((rule) => !rule.exact)
    .map((rule) => ({ pattern: rule.match, limit: rule.limit }));
  if (!samePatterns(previous?.patterns ?? [], patterns)) {
    changes.push({ setting: 'clientLimitPatterns', from: previous?.patterns ?? [], to: patterns });
  }
  manager.setClientMemoryLimitPatterns(patterns);

  recordChange(changes, 'sessionExpiry', manager.getDefaultSessionExpiry(), config.sessionExpiry);
  manager.setDefaultSessionExpiry(config.sessionExpiry);

  recordChange(changes, 'cleanupInterval', previous?.cleanupInterval, config.cleanupInterval);
  if (config.cleanupInterval === 0) {
    manager.stopExpiryCleanup();
  } else {
    manager.startExpiryCleanup(config.cleanupInterval);
  }

  appliedByManager.set(manager, { exactIds, patterns, cleanupInterval: config.cleanupInterval });
  logChanges(manager, changes);
  return changes;
}

/**
 * Selects the configured backend when it differs from the active one. `auto`
 * differs only from a system allocator that was chosen explicitly, because a
 * system allocator in use after a failed tcmalloc load is what `auto` resolves to.
 */
function applyBackend(requested: ConfiguredBackend, manager: GlobalSessionManager, changes: ConfigChange[]): void {
  const active = manager.getBackendInfo();
  const isFallback = active.name === 'system' && active.fallbackReason !== undefined;

  if (requested === 'auto' ? active.name === 'tcmalloc' || isFallback : requested === active.name) {
    return;
  }
  if (requested === 'tcmalloc' && isFallback) {
    // Loading was already tried in the same order at startup and failed, and
    // the reason does not change while the process runs.
    manager.logger.warn(
      { requested, active: active.name, reason: active.fallbackReason },
      'tcmalloc is configured but could not be loaded; the system allocator stays in use',
    );
    return;
  }

  try {
    manager.selectBackend(requested);
  } catch (err) {
    // The addon rejects a switch with MQ_ERR_ALLOCATOR while blocks from the
    // active backend are still allocated, since they must be freed by it.
    if (err instanceof MqttAllocatorError && err.code === 'MQ_ERR_ALLOCATOR') {
      manager.logger.warn(
        { err, requested, active: active.name },
        'memory backend not changed because blocks are already allocated; restart the process to use the configured backend',
      );
      return;
    }
    throw err;
  }

  const selected: BackendInfo = manager.getBackendInfo();
  changes.push({ setting: 'backend', from: active.name, to: selected.name });
  if (requested === 'tcmalloc' && selected.name !== 'tcmalloc') {
    manager.logger.warn(
      { requested, active: selected.name, reason: selected.fallbackReason },
      'tcmalloc is configured but could not be loaded; using the system allocator',
    );
  }
}

/** Sets each exact client limit and returns the ids set. */
function applyClientLimits(
  rules: readonly ClientLimitRule[],
  previous: AppliedState | undefined,
  manager: GlobalSessionManager,
  changes: ConfigChange[],
): Set<string> {
  const exactIds = new Set<string>();
  for (const rule of rules) {
    if (!rule.exact) {
      continue;
    }
    const before = manager.getClientMemoryLimit(rule.match);
    if (before !== rule.limit || previous?.exactIds.has(rule.match) !== true) {
      changes.push({ setting: 'clientLimit', clientId: rule.match, from: before, to: rule.limit });
    }
    manager.setClientMemoryLimit(rule.match, rule.limit);
    exactIds.add(rule.match);
  }

  // An id dropped from the configuration falls back to its pattern or the default.
  for (const clientId of previous?.exactIds ?? []) {
    if (exactIds.has(clientId)) continue;
    changes.push({ setting: 'clientLimit', clientId, from: manager.getClientMemoryLimit(clientId), to: undefined });
    manager.clearClientMemoryLimit(clientId);
  }
  return exactIds;
}

function validateConfig(config: SessionAllocatorConfig): void {
  if (config === null || typeof config !== 'object') {
    throw invalidArgument('config', config, 'a SessionAllocatorConfig object, as loadConfig() returns');
  }
  assertKnownOptions('config', config, CONFIG_KEYS);
  if (!BACKENDS.includes(config.backend)) {
    throw invalidArgument('config.backend', config.backend, '"tcmalloc", "system" or "auto"');
  }
  assertBytes('config.globalLimit', config.globalLimit);
  assertBytes('config.threadLimit', config.threadLimit);
  assertBytes('config.defaultClientLimit', config.defaultClientLimit);
  assertSeconds('config.sessionExpiry', config.sessionExpiry);
  assertInterval('config.cleanupInterval', config.cleanupInterval, 'seconds');
  // Not applied here, but checked, since the broker reads it from the same object.
  const metrics = config.metrics;
  if (metrics === null || typeof metrics !== 'object') {
    throw invalidArgument('config.metrics', metrics, 'an object { topClients }');
  }
  assertKnownOptions('config.metrics', metrics, METRICS_KEYS);
  assertCount('config.metrics.topClients', metrics.topClients, 'clients');

  if (!Array.isArray(config.clientLimits)) {
    throw invalidArgument('config.clientLimits', config.clientLimits, 'an array of { match, exact, limit }');
  }
  config.clientLimits.forEach((rule, index) => {
    const name = `config.clientLimits[${index}]`;
    if (rule === null || typeof rule !== 'object') {
      throw invalidArgument(name, rule, 'an object { match, exact, limit }');
    }
    assertKnownOptions(name, rule, RULE_KEYS);
    if (typeof rule.match !== 'string' || rule.match === '') {
      throw invalidArgument(`${name}.match`, rule.match, 'a non-empty client id or pattern');
    }
    if (typeof rule.exact !== 'boolean') {
      throw invalidArgument(`${name}.exact`, rule.exact, 'true for a client id, false for a pattern');
    }
    // Checked here rather than left to setClientMemoryLimit, which would
    // refuse the id only after the settings before it had been applied.
    if (rule.exact) {
      try {
        assertClientId(rule.match);
      } catch {
        throw invalidArgument(
          `${name}.match`,
          rule.match,
          `a client id: well-formed Unicode (no lone surrogates) without U+0000, of at most ${MAX_CLIENT_ID_BYTES} bytes of UTF-8`,
        );
      }
    }
    assertBytes(`${name}.limit`, rule.limit);
  });
}

function recordChange(changes: ConfigChange[], setting: string, from: unknown, to: unknown): void {
  if (from !== to) {
    changes.push({ setting, from, to });
  }
}

function samePatterns(a: readonly LimitPatternEntry[], b: readonly LimitPatternEntry[]): boolean {
  return a.length === b.length && a.every((entry, i) => entry.pattern === b[i]?.pattern && entry.limit === b[i]?.limit);
}

function logChanges(manager: GlobalSessionManager, changes: readonly ConfigChange[]): void {
  if (changes.length === 0) {
    manager.logger.debug('memory configuration applied; nothing changed');
    return;
  }

  const clientChanges = changes.filter((change) => change.setting === 'clientLimit');
  const otherChanges = changes.filter((change) => change.setting !== 'clientLimit');
  manager.logger.info(
    {
      changes: otherChanges,
      clientLimits: clientChanges.slice(0, MAX_LOGGED_CLIENT_CHANGES),
      otherClientLimits: Math.max(0, clientChanges.length - MAX_LOGGED_CLIENT_CHANGES),
    },
    'memory configuration applied',
  );
}
