// Prometheus metrics for the allocator state, read from the managers when
// the registry is scraped. prom-client is an optional peer dependency: only
// types are imported at the top, and the module itself is loaded when
// registerPrometheusMetrics() is first called, so that the package loads
// without it.
import type { Metric, Registry, RegistryContentType } from 'prom-client';

import type { BoundedPersistence } from './aedes/bounded-persistence';
import { invalidArgument } from './errors';
import { assertManager, GlobalSessionManager } from './global-manager';
import { assertKnownOptions } from './validate';
import { createPersistenceMetrics } from './persistence-metrics';

export interface PrometheusMetricsOptions {
  /** Clients exported with a client_id label, those using the most memory first. Default 20, and 0 exports none. */
  topClients?: number;
  /** Not supported: the metric names are fixed so that dashboards and alerts can rely on them. */
  prefix?: never;
  /** Manager to read. Defaults to GlobalSessionManager.instance() of the calling thread. */
  manager?: GlobalSessionManager;
  /** An Aedes wrapper whose drops and stored messages are exported too. */
  persistence?: BoundedPersistence;
}

const METRICS_OPTIONS: readonly (keyof PrometheusMetricsOptions)[] = ['topClients', 'prefix', 'manager', 'persistence'];

export interface PrometheusMetricsRegistration {
  /** Names of the registered metrics. */
  readonly names: readonly string[];
  /** Removes the metrics from the registry. Further calls do nothing. */
  unregister(): void;
}

/** Names of the metrics that registerPrometheusMetrics() registers. */
export const METRIC_NAMES = {
  tagUsage: 'mqtt_session_memory_bytes',
  globalUsage: 'mqtt_session_global_memory_bytes',
  globalLimit: 'mqtt_session_global_memory_limit_bytes',
  clientUsage: 'mqtt_session_client_memory_bytes',
  violations: 'mqtt_session_limit_violations_total',
  queueDrops: 'mqtt_session_queue_dropped_total',
  backendInfo: 'mqtt_session_backend_info',
  heap: 'mqtt_session_backend_heap_bytes',
} as const;

/** Default for PrometheusMetricsOptions.topClients. */
export const DEFAULT_TOP_CLIENTS = 20;

type PromClient = typeof import('prom-client');

/**
 * Registers the allocator metrics on `registry`. Each metric reads the
 * managers in its collect() callback, so values are current at every scrape
 * and nothing runs between scrapes:
 *
 * - `mqtt_session_memory_bytes{tag}`: bytes in use by memory tag (the
 *   MemoryTag names, e.g. `SESSION_QUEUE`)
 * - `mqtt_session_global_memory_bytes`, `mqtt_session_global_memory_limit_bytes`
 * - `mqtt_session_client_memory_bytes{client_id}`: the `topClients` clients
 *   using the most memory. The series are rebuilt at every scrape, so clients
 *   that leave the top list or expire disappear and the label set stays bounded.
 * - `mqtt_session_limit_violations_total{tag}`: allocations rejected by a limit
 *   since the process started
 * - `mqtt_session_queue_dropped_total`: payloads that SessionQueues dropped
 *   under 'drop-oldest' since the process started, on all threads
 * - `mqtt_session_backend_info{backend,version}`: always 1
 * - `mqtt_session_backend_heap_bytes{kind}`: tcmalloc's heap figures
 *   (`heap_size`, `pageheap_free_bytes`, ...), with no series for the system allocator
 *
 * With `options.persistence`, also the Aedes wrapper's
 * `mqtt_session_dropped_messages_total`, `mqtt_session_evicted_messages_total`,
 * `mqtt_session_overflow_disconnects_total`, `mqtt_session_expired_sessions_total`,
 * and `mqtt_session_stored_messages{state}` and `mqtt_session_stored_bytes{state}`
 * with state `queued`, `inflight` or `incoming`.
 *
 * prom-client escapes label values, so any client id is safe as a label.
 *
 * @throws MqttAllocatorError MQ_ERR_INVALID_ARGS for invalid options.
 * @throws Error when a metric of the same name is already registered, and then registers nothing.
 */
export function registerPrometheusMetrics(
  registry: Registry<RegistryContentType>,
  options: PrometheusMetricsOptions = {},
): PrometheusMetricsRegistration {
  if (registry === null || typeof registry !== 'object' || typeof registry.registerMetric !== 'function' ||
      typeof registry.getSingleMetric !== 'function') {
    throw invalidArgument('registry', registry, 'a prom-client Registry, such as new Registry() or register');
  }
  if (options === null || typeof options !== 'object') {
    throw invalidArgument('options', options, 'an object of metrics options');
  }
  assertKnownOptions('options', options, METRICS_OPTIONS);
  const topClients = options.topClients === undefined ? DEFAULT_TOP_CLIENTS : options.topClients;
  if (typeof topClients !== 'number' || !Number.isSafeInteger(topClients) || topClients < 0) {
    throw invalidArgument('options.topClients', topClients, 'a non-negative integer number of clients');
  }
  if ((options as { prefix?: unknown }).prefix !== undefined) {
    throw invalidArgument('options.prefix', (options as { prefix?: unknown }).prefix, 'no prefix: the metric names are fixed');
  }
  if (options.manager !== undefined) assertManager('options.manager', options.manager);
  const manager = options.manager ?? GlobalSessionManager.instance();
  const persistence = options.persistence;
  if (persistence !== undefined && typeof (persistence as { stats?: unknown } | null)?.stats !== 'function') {
    throw invalidArgument('options.persistence', persistence, 'a BoundedPersistence from createBoundedPersistence()');
  }

  const prom = loadPromClient();
  const metrics = createMetrics(prom, manager, topClients);
  if (persistence !== undefined) metrics.push(...createPersistenceMetrics(prom, persistence));
  for (const { name } of metrics) {
    if (registry.getSingleMetric(name) !== undefined) {
      throw new Error(
        `Cannot register Prometheus metric ${name}: a metric of that name is already registered ` +
          'on this registry. Call unregister() on the earlier registration first.',
      );
    }
  }
  for (const { metric } of metrics) {
    registry.registerMetric(metric);
  }

  return {
    names: metrics.map(({ name }) => name),
    unregister() {
      for (const { name, metric } of metrics) {
        // Leave a metric alone that someone registered under the same name
        // after this one was removed.
        if (registry.getSingleMetric(name) === metric) {
          registry.removeSingleMetric(name);
        }
      }
    },
  };
}

function loadPromClient(): PromClient {
  try {
    return require('prom-client') as PromClient;
  } catch (err) {
    throw new Error(
      'registerPrometheusMetrics() needs the prom-client package, which is not installed: run `npm install prom-client`',
      { cause: err },
    );
  }
}

interface NamedMetric {
  name: string;
  metric: Metric;
}

function createMetrics(prom: PromClient, manager: GlobalSessionManager, topClients: number): NamedMetric[] {
  // `registers: []` keeps the constructors from registering on the default
  // registry. The caller's registry gets them once all were created.
  const tagUsage = new prom.Gauge({
    name: METRIC_NAMES.tagUsage,
    help: 'Bytes in use now by allocators of each memory tag (sizes as reserved from the backend).',
    labelNames: ['tag'],
    registers: [],
    collect() {
      this.reset();
      for (const [tag, bytes] of Object.entries(manager.getTagUsage())) {
        this.set({ tag }, bytes);
      }
    },
  });

  const globalUsage = new prom.Gauge({
    name: METRIC_NAMES.globalUsage,
    help: 'Bytes in use under the process-wide root allocator, across all threads.',
    registers: [],
    collect() {
      this.set(manager.getGlobalMemoryUsage());
    },
  });

  const globalLimit = new prom.Gauge({
    name: METRIC_NAMES.globalLimit,
    help: 'Limit of the process-wide root allocator in bytes, or 0 for unlimited.',
    registers: [],
    collect() {
      this.set(manager.getGlobalMemoryLimit());
    },
  });

  const clientUsage = new prom.Gauge({
    name: METRIC_NAMES.clientUsage,
    help: `Session memory in bytes of the ${topClients} clients using the most.`,
    labelNames: ['client_id'],
    registers: [],
    collect() {
      this.reset();
      for (const [clientId, bytes] of selectTopClients(manager.getClientMemoryUsage(), topClients)) {
        this.set({ client_id: clientId }, bytes);
      }
    },
  });

  // A counter whose value is copied from the addon's own monotonic count at
  // each scrape, so it never decreases while the process lives.
  const violations = new prom.Counter({
    name: METRIC_NAMES.violations,
    help: 'Allocations rejected by a memory limit since the process started, by the tag of the allocator whose limit rejected them.',
    labelNames: ['tag'],
    registers: [],
    collect() {
      this.reset();
      for (const [tag, count] of Object.entries(manager.getLimitViolations())) {
        this.inc({ tag }, count);
      }
    },
  });

  const queueDrops = new prom.Counter({
    name: METRIC_NAMES.queueDrops,
    help: "Payloads that session queues dropped under 'drop-oldest' to make room, since the process started.",
    registers: [],
    collect() {
      this.reset();
      this.inc(manager.getQueueDrops());
    },
  });

  const backendInfo = new prom.Gauge({
    name: METRIC_NAMES.backendInfo,
    help: 'Memory backend in use (tcmalloc or system) and its version. The value is always 1.',
    labelNames: ['backend', 'version'],
    registers: [],
    collect() {
      const info = manager.getBackendInfo();
      this.reset();
      this.set({ backend: info.name, version: info.version ?? '' }, 1);
    },
  });

  const heap = new prom.Gauge({
    name: METRIC_NAMES.heap,
    help: 'Heap figures reported by the tcmalloc backend, in bytes. The system allocator has no series.',
    labelNames: ['kind'],
    registers: [],
    collect() {
      this.reset();
      for (const [kind, bytes] of Object.entries(manager.getBackendInfo().heap ?? {})) {
        this.set({ kind: toSnakeCase(kind) }, bytes);
      }
    },
  });

  return [
    { name: METRIC_NAMES.tagUsage, metric: tagUsage },
    { name: METRIC_NAMES.globalUsage, metric: globalUsage },
    { name: METRIC_NAMES.globalLimit, metric: globalLimit },
    { name: METRIC_NAMES.clientUsage, metric: clientUsage },
    { name: METRIC_NAMES.violations, metric: violations },
    { name: METRIC_NAMES.queueDrops, metric: queueDrops },
    { name: METRIC_NAMES.backendInfo, metric: backendInfo },
    { name: METRIC_NAMES.heap, metric: heap },
  ];
}

/** Converts a camelCase name (`pageheapFreeBytes`) to snake_case (`pageheap_free_bytes`). */
function toSnakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

/**
 * Returns the `count` entries with the highest usage, highest first. Equal
 * usages are ordered by client id so that the choice is stable between scrapes.
 * A min-heap of `count` entries keeps this O(n log count) for many clients.
 */
export function selectTopClients(usage: ReadonlyMap<string, number>, count: number): Array<[string, number]> {
  if (count === 0) {
    return [];
  }

  const heap: Array<[string, number]> = [];
  for (const entry of usage) {
    if (heap.length < count) {
      heap.push(entry);
      siftUp(heap, heap.length - 1);
    } else if (ranksAbove(entry, heap[0] as [string, number])) {
      heap[0] = entry;
      siftDown(heap, 0);
    }
  }
  return heap.sort((a, b) => (ranksAbove(a, b) ? -1 : 1));
}

/** True when `a` belongs before `b` in the top list. */
function ranksAbove(a: readonly [string, number], b: readonly [string, number]): boolean {
  return a[1] !== b[1] ? a[1] > b[1] : a[0] < b[0];
}

// The heap's root is the entry that ranks lowest, the first to be replaced.
function siftUp(heap: Array<[string, number]>, index: number): void {
  let child = index;
  while (child > 0) {
    const parent = (child - 1) >> 1;
    if (!ranksAbove(heap[parent] as [string, number], heap[child] as [string, number])) {
      return;
    }
    swap(heap, parent, child);
    child = parent;
  }
}

function siftDown(heap: Array<[string, number]>, index: number): void {
  let parent = index;
  for (;;) {
    const left = 2 * parent + 1;
    const right = left + 1;
    let lowest = parent;
    if (left < heap.length && ranksAbove(heap[lowest] as [string, number], heap[left] as [string, number])) {
      lowest = left;
    }
    if (right < heap.length && ranksAbove(heap[lowest] as [string, number], heap[right] as [string, number])) {
      lowest = right;
    }
    if (lowest === parent) {
      return;
    }
    swap(heap, parent, lowest);
    parent = lowest;
  }
}

function swap(heap: Array<[string, number]>, i: number, j: number): void {
  const first = heap[i] as [string, number];
  heap[i] = heap[j] as [string, number];
  heap[j] = first;
}
