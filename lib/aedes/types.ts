// The shapes the Aedes integration works with: the promise interface Aedes
// 1.x calls on its persistence, the packets it passes, and the options,
// events and statistics of BoundedPersistence.
import type { Readable } from 'node:stream';

import type { Aedes } from 'aedes';
import type { Logger } from 'pino';

import type { GlobalSessionManager } from '../global-manager';

/** Policy for a message that does not fit in a subscriber's budget. */
export type OverflowAction = 'drop-new' | 'drop-oldest' | 'disconnect';

/** A client as persistence methods receive it: Aedes passes its Client, or
 * an object with the id alone. */
export interface PersistenceClient {
  readonly id: string;
}

/** A subscriber as subscriptionsByTopic returns it and outgoingEnqueue takes it. */
export interface PersistenceSubscriber {
  clientId: string;
  topic?: string;
  qos?: number;
}

/** A packet as Aedes hands it to its persistence (an aedes-packet Packet, a
 * PubRel, or an MQTT.js packet for inbound QoS 2). */
export interface PersistencePacket {
  cmd?: string;
  brokerId?: string;
  brokerCounter?: number;
  topic?: string;
  payload?: Buffer | Uint8Array | string;
  qos?: number;
  retain?: boolean;
  dup?: boolean;
  messageId?: number;
  clientId?: string;
  properties?: unknown;
  messageExpiry?: number;
}

/** A packet handed back to Aedes. Its payload is a V8 copy the caller owns. */
export interface StoredPacket {
  cmd: string;
  brokerId?: string;
  brokerCounter?: number;
  topic?: string;
  payload?: Buffer;
  qos?: number;
  retain?: boolean;
  dup?: boolean;
  messageId?: number;
  clientId?: string;
  properties?: unknown;
  messageExpiry?: number;
}

/** A stored subscription, as subscriptionsByClient returns it. */
export interface PersistenceSubscription {
  topic: string;
  qos: number;
  [field: string]: unknown;
}

/**
 * The promise interface Aedes 1.x calls on its persistence
 * (aedes-persistence 11 and its kin). Callback forms are not used by Aedes
 * 1.x and are not part of it.
 */
export interface AedesPersistence {
  setup(broker: Aedes): Promise<unknown>;
  storeRetained(packet: PersistencePacket): Promise<unknown>;
  createRetainedStream(pattern: string): Readable;
  createRetainedStreamCombi(patterns: string[]): Readable;
  addSubscriptions(client: PersistenceClient, subs: PersistenceSubscription[]): Promise<unknown>;
  removeSubscriptions(client: PersistenceClient, topics: string[]): Promise<unknown>;
  subscriptionsByClient(client: PersistenceClient): Promise<PersistenceSubscription[]>;
  countOffline(): Promise<{ subsCount: number; clientsCount: number }>;
  subscriptionsByTopic(topic: string): Promise<PersistenceSubscriber[]>;
  cleanSubscriptions(client: PersistenceClient): Promise<unknown>;
  outgoingEnqueue(sub: PersistenceSubscriber, packet: PersistencePacket): Promise<unknown>;
  outgoingEnqueueCombi(subs: PersistenceSubscriber[], packet: PersistencePacket): Promise<unknown>;
  outgoingUpdate(client: PersistenceClient, packet: PersistencePacket): Promise<unknown>;
  outgoingClearMessageId(client: PersistenceClient, packet: PersistencePacket): Promise<StoredPacket | undefined>;
  outgoingStream(client: PersistenceClient): Readable;
  incomingStorePacket(client: PersistenceClient, packet: PersistencePacket): Promise<unknown>;
  incomingGetPacket(client: PersistenceClient, packet: PersistencePacket): Promise<StoredPacket>;
  incomingDelPacket(client: PersistenceClient, packet: PersistencePacket): Promise<unknown>;
  /** Optional: Aedes feature-detects it. */
  cleanIncoming?(client: PersistenceClient): Promise<unknown>;
  putWill(client: PersistenceClient, packet: PersistencePacket): Promise<unknown>;
  getWill(client: PersistenceClient): Promise<StoredPacket | undefined>;
  delWill(client: PersistenceClient): Promise<StoredPacket | undefined>;
  streamWill(brokers?: Record<string, number>): Readable;
  getClientList(topic: string): Readable;
  destroy(): Promise<unknown>;
}

export interface BoundedPersistenceOptions {
  /** The persistence that keeps subscriptions, retained messages and wills.
   * Defaults to the in-memory aedes-persistence. */
  persistence?: AedesPersistence;
  /** Defaults to GlobalSessionManager.instance(). */
  manager?: GlobalSessionManager;
  /** Action for a subscriber over its budget; default 'drop-new'. */
  policy?: OverflowAction;
  /** Per-client action; undefined falls back to `policy`. */
  clientPolicies?: (clientId: string) => OverflowAction | undefined;
  /** Defaults to the package's logger (getLogger()). */
  logger?: Logger;
  /** Session expiry in seconds for persistent (clean=false) clients.
   * Defaults to the manager's default session expiry, or to never
   * (4294967295) while that default is 0, since a persistent MQTT 3.1.1
   * session outlives its connection. Clean clients always get 0: their
   * session ends with the connection. */
  expiryInterval?: number;
  /** Seconds between checks for sessions removed by expiry cleanup, whose
   * stored messages are then released. Default 5. 0 disables the timer, and
   * the check still runs when a message comes for such a client or it reconnects. */
  expiryCheckInterval?: number;
  /** Milliseconds over which drops are counted before one summary line is
   * logged. Default 10,000. With 0, the summary is logged on the next timer
   * turn, so about one line per burst of drops. */
  logIntervalMs?: number;
}

/** Reason a message was dropped for a client. */
export type DropReason =
  /** The new message did not fit in the client's budget. */
  | 'limit-exceeded'
  /** An older queued message was dropped to make room ('drop-oldest'). */
  | 'evicted'
  /** The client's session had expired. */
  | 'session-expired'
  /** The client has no session this thread can charge. */
  | 'no-session'
  /** An inbound QoS 2 message did not fit in the publisher's budget; Aedes
   * then closes the publisher's connection. */
  | 'inbound-limit-exceeded';

export interface DropEvent {
  clientId: string;
  policy: OverflowAction;
  reason: DropReason;
  /** Payload bytes of the dropped message. */
  bytes: number;
  topic?: string;
}

export interface DisconnectEvent {
  clientId: string;
}

export interface ExpiredEvent {
  clientId: string;
  /** Stored messages released with the session. */
  messages: number;
  /** Their payload bytes. */
  bytes: number;
}

export interface BoundedPersistenceEvents {
  drop: [event: DropEvent];
  disconnect: [event: DisconnectEvent];
  expired: [event: ExpiredEvent];
}

/** Messages and bytes kept for one client. Bytes are payload bytes, and the
 * allocators are charged the backend's usable sizes, a little more. */
export interface ClientStoreStats {
  clientId: string;
  connected: boolean;
  /** Outgoing messages not yet sent (no packet id yet). */
  queuedMessages: number;
  queuedBytes: number;
  /** Outgoing messages sent and awaiting PUBACK, PUBREC or PUBCOMP. */
  inflightMessages: number;
  inflightBytes: number;
  /** Inbound QoS 2 messages awaiting PUBREL. */
  incomingMessages: number;
  incomingBytes: number;
  /** Messages dropped for this client (only grows). */
  dropped: number;
  /** Of those, the older ones dropped to make room (only grows). */
  evicted: number;
  /** Times this client's connection was closed for overflow (only grows). */
  disconnected: number;
}

export interface BoundedPersistenceStats {
  /** Totals since the persistence was created (only grow). */
  dropped: number;
  evicted: number;
  disconnected: number;
  expiredSessions: number;
  /** Current totals over all clients. */
  queuedMessages: number;
  queuedBytes: number;
  inflightMessages: number;
  inflightBytes: number;
  incomingMessages: number;
  incomingBytes: number;
  /** By client id. */
  clients: Map<string, ClientStoreStats>;
}
