// Prometheus metrics of the Aedes wrapper (BoundedPersistence): what it
// dropped, evicted and keeps. registerPrometheusMetrics() adds them when it
// is given the persistence.
import type { Metric } from 'prom-client';

import type { BoundedPersistence } from './aedes/bounded-persistence';
import type { BoundedPersistenceStats } from './aedes/types';

type PromClient = typeof import('prom-client');

/** Names of the metrics registered for a BoundedPersistence. */
export const PERSISTENCE_METRIC_NAMES = {
  dropped: 'mqtt_session_dropped_messages_total',
  evicted: 'mqtt_session_evicted_messages_total',
  disconnected: 'mqtt_session_overflow_disconnects_total',
  expired: 'mqtt_session_expired_sessions_total',
  storedMessages: 'mqtt_session_stored_messages',
  storedBytes: 'mqtt_session_stored_bytes',
} as const;

// stats() walks every client's store. A scrape reads all the metrics in a
// row, so it takes one snapshot for all of them.
const SNAPSHOT_MS = 100;

/** Creates the metrics, unregistered, reading `persistence` at each scrape. */
export function createPersistenceMetrics(prom: PromClient, persistence: BoundedPersistence): Array<{ name: string; metric: Metric }> {
  let snapshot: BoundedPersistenceStats | undefined;
  let takenAt = 0;
  const stats = (): BoundedPersistenceStats => {
    const now = Date.now();
    if (snapshot === undefined || now - takenAt > SNAPSHOT_MS) {
      snapshot = persistence.stats();
      takenAt = now;
    }
    return snapshot;
  };

  // Counters copy the wrapper's own totals, which only grow.
  const counter = (name: string, help: string, read: (totals: BoundedPersistenceStats) => number): Metric =>
    new prom.Counter({
      name,
      help,
      registers: [],
      collect() {
        this.reset();
        this.inc(read(stats()));
      },
    });

  const stored = (name: string, help: string, read: (totals: BoundedPersistenceStats) => Record<string, number>): Metric =>
    new prom.Gauge({
      name,
      help,
      labelNames: ['state'],
      registers: [],
      collect() {
        this.reset();
        for (const [state, value] of Object.entries(read(stats()))) this.set({ state }, value);
      },
    });

  const names = PERSISTENCE_METRIC_NAMES;
  return [
    {
      name: names.dropped,
      metric: counter(
        names.dropped,
        'Messages the Aedes wrapper did not keep for a subscriber, or dropped from its queue: over its limit, evicted, or without a session.',
        (totals) => totals.dropped,
      ),
    },
    {
      name: names.evicted,
      metric: counter(names.evicted, "Queued messages dropped to make room under the 'drop-oldest' policy.", (totals) => totals.evicted),
    },
    {
      name: names.disconnected,
      metric: counter(names.disconnected, "Subscribers disconnected by the 'disconnect' policy.", (totals) => totals.disconnected),
    },
    {
      name: names.expired,
      metric: counter(names.expired, 'Sessions whose stored messages were released because the session expired.', (totals) => totals.expiredSessions),
    },
    {
      name: names.storedMessages,
      metric: stored(names.storedMessages, 'Messages the Aedes wrapper keeps now: queued, inflight and inbound QoS 2.', (totals) => ({
        queued: totals.queuedMessages,
        inflight: totals.inflightMessages,
        incoming: totals.incomingMessages,
      })),
    },
    {
      name: names.storedBytes,
      metric: stored(names.storedBytes, 'Payload bytes the Aedes wrapper keeps now: queued, inflight and inbound QoS 2.', (totals) => ({
        queued: totals.queuedBytes,
        inflight: totals.inflightBytes,
        incoming: totals.incomingBytes,
      })),
    },
  ];
}
