// The package's logger. Library code never prints on its own: it logs
// through a pino logger the application can replace (setLogger), and counts
// refused allocations per client so that a flood of refusals becomes one
// line per client per interval.
import pino, { Logger } from 'pino';

/** The levels pino accepts: its own, and 'silent', which logs nothing. */
export const LOG_LEVELS: readonly string[] = [...Object.keys(pino.levels.values), 'silent'];

/** Returns true when `value` is a level pino accepts. */
export function isLogLevel(value: string): boolean {
  return LOG_LEVELS.includes(value);
}

const LEVEL_VARIABLE = 'MQTT_ALLOCATOR_LOG_LEVEL';
const DEFAULT_LEVEL = 'warn';
const requestedLevel = process.env[LEVEL_VARIABLE] || undefined;
const levelValid = requestedLevel === undefined || isLogLevel(requestedLevel);

let current: Logger = pino({
  name: 'mqtt-session-allocator',
  level: levelValid ? requestedLevel ?? DEFAULT_LEVEL : DEFAULT_LEVEL,
}, pino.destination(2));

// A typo in the variable must not keep the package from loading.
if (!levelValid) {
  current.warn(
    { variable: LEVEL_VARIABLE, value: requestedLevel },
    `invalid ${LEVEL_VARIABLE} ${JSON.stringify(requestedLevel)}: expected one of ${LOG_LEVELS.join(', ')}; logging at ${DEFAULT_LEVEL}`,
  );
}

/** Returns the logger in use. */
export function getLogger(): Logger {
  return current;
}

/** Replaces the logger, for example with a child of the application's logger. */
export function setLogger(logger: Logger): void {
  current = logger;
}

/** Interval at which refused allocations are summarized, in milliseconds. */
export const REFUSAL_LOG_INTERVAL_MS = 10_000;

/** Clients listed by name in one summary line; the rest are counted. */
const MAX_CLIENTS_PER_SUMMARY = 20;

interface RefusalCount {
  count: number;
  tag: string | undefined;
  limit: number | undefined;
}

/**
 * Counts refused allocations and logs them as one warning per interval: the
 * first refusal starts the interval, and its end logs the count per client.
 */
export class RefusalLog {
  private readonly counts = new Map<string, RefusalCount>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly intervalMs = REFUSAL_LOG_INTERVAL_MS) {}

  record(clientId: string | undefined, tag: string | undefined, limit: number | undefined): void {
    const key = clientId ?? '';
    const entry = this.counts.get(key);
    if (entry) {
      entry.count += 1;
    } else {
      this.counts.set(key, { count: 1, tag, limit });
    }
    if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), this.intervalMs);
      this.timer.unref();
    }
  }

  /** Logs and resets the counts gathered so far. */
  flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.counts.size === 0) return;

    const sorted = [...this.counts.entries()].sort((a, b) => b[1].count - a[1].count);
    const clients = sorted.slice(0, MAX_CLIENTS_PER_SUMMARY).map(([clientId, entry]) => ({
      clientId: clientId === '' ? undefined : clientId,
      refused: entry.count,
      tag: entry.tag,
      limit: entry.limit,
    }));
    const total = sorted.reduce((sum, [, entry]) => sum + entry.count, 0);
    current.warn(
      { refused: total, clients, otherClients: Math.max(0, sorted.length - MAX_CLIENTS_PER_SUMMARY) },
      'allocations refused by memory limits',
    );
    this.counts.clear();
  }
}
