// DropLog: messages dropped (and connections closed) for overflow become one
// warning per interval, with a count per client, never one line per message.
import type { Logger } from 'pino';

import type { DropReason, OverflowAction } from './types';

/** Clients listed by name in one summary line; the rest are counted. */
const MAX_CLIENTS_PER_SUMMARY = 20;

interface DropCount {
  policy: OverflowAction;
  dropped: number;
  disconnected: number;
  reasons: Partial<Record<DropReason, number>>;
}

export class DropLog {
  private readonly counts = new Map<string, DropCount>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs: number,
  ) {}

  recordDrop(clientId: string, policy: OverflowAction, reason: DropReason): void {
    const entry = this.entry(clientId, policy);
    entry.dropped += 1;
    entry.reasons[reason] = (entry.reasons[reason] ?? 0) + 1;
  }

  recordDisconnect(clientId: string, policy: OverflowAction): void {
    this.entry(clientId, policy).disconnected += 1;
  }

  /** Logs and resets the counts gathered so far. */
  flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.counts.size === 0) return;

    const sorted = [...this.counts.entries()].sort((a, b) => b[1].dropped - a[1].dropped);
    const clients = sorted.slice(0, MAX_CLIENTS_PER_SUMMARY).map(([clientId, entry]) => ({ clientId, ...entry }));
    const dropped = sorted.reduce((sum, [, entry]) => sum + entry.dropped, 0);
    const disconnected = sorted.reduce((sum, [, entry]) => sum + entry.disconnected, 0);
    this.logger.warn(
      { dropped, disconnected, clients, otherClients: Math.max(0, sorted.length - MAX_CLIENTS_PER_SUMMARY) },
      'session messages dropped by memory limits',
    );
    this.counts.clear();
  }

  /** Stops the timer without logging. */
  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  // The first record of an interval starts its timer; the timer never keeps
  // the process alive.
  private entry(clientId: string, policy: OverflowAction): DropCount {
    let entry = this.counts.get(clientId);
    if (entry === undefined) {
      entry = { policy, dropped: 0, disconnected: 0, reasons: {} };
      this.counts.set(clientId, entry);
    }
    if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), this.intervalMs);
      this.timer.unref();
    }
    return entry;
  }
}
