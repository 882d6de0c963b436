// BoundedPersistence: an Aedes 1.x persistence that keeps each client's
// session messages in payload blocks charged to that client, and bounds them
// by the client's byte limit.
//
// Where each kind of data is kept:
// - Outgoing messages of persistent (clean=false) subscribers, queued and
//   inflight, are kept here, their payloads copied into native payload
//   blocks (ThreadLocalSessionManager.storePayload) of the subscriber's
//   'queue' allocator. One block serves a message from enqueue to
//   acknowledgement; it is not copied again when the message goes inflight.
//   A block costs no Buffer while it waits.
// - Inbound QoS 2 messages awaiting PUBREL are kept here, their payloads in
//   blocks of the publisher's 'session' allocator (session state, not a
//   queue).
// - Subscriptions, retained messages and wills stay in the inner persistence;
//   every method for them is delegated unchanged. The outgoing and inbound
//   methods are implemented here and never reach the inner persistence, so no
//   message is stored twice and nothing unbounded is left behind.
//
// What a client's bytes mean: each subscriber's stored message holds its own
// copy of the payload, charged to that subscriber. A client's usage is thus
// exactly the blocks held for it: never shared, never counted twice. Fan-out
// to N offline subscribers costs N copies, each bounded by its own
// subscriber's limit. The charge is the backend's usable size of the copy.
// Packet fields are small V8 objects and the topic string is shared with the
// broker, so neither is charged. An empty payload is still charged the
// backend's smallest block (8 bytes with tcmalloc), so a flood of empty
// messages stays bounded too.
//
// Blocks and writes: payload blocks never leave this module. Packets handed
// to Aedes (outgoingStream, outgoingClearMessageId, incomingGetPacket) carry V8
// copies made when Aedes requests them, so no socket write ever points into a
// block and a block can be freed at any moment. The copies in
// transit are bounded by the stream's backpressure towards the socket.
//
// Over budget: outgoingEnqueueCombi never rejects (the error would reach the
// publisher, not the subscriber). A subscriber whose copy does not fit is
// skipped, and its policy decides what else happens:
// - 'drop-new': the new message is not stored for it;
// - 'drop-oldest': its oldest queued messages are dropped until the new one
//   fits (inflight messages are never dropped: they only await their ack);
// - 'disconnect': the new message is not stored and the subscriber's
//   connection, if open, is closed.
// Each drop is counted (stats()), emitted ('drop', 'disconnect') and logged as
// one summary per interval. An online subscriber still receives the message
// live from Aedes. Only the stored copy, used for redelivery, is missing.
//
// Releases: at PUBACK; at PUBREC for the payload of an outgoing QoS 2 message
// (a PUBREL, without payload, is kept until PUBCOMP); at PUBREL for inbound
// QoS 2; on a clean start (cleanSubscriptions, cleanIncoming); when a clean
// client disconnects; when the session expires; on broker close and destroy().
// A queued message that Aedes will not send to its client (authorizeForward
// refused it, or no-local) is released one turn later, or at once when a new
// message for the client needs the room.
//
// Sessions: a client's session is registered on the broker's 'client' event
// and unregistered on 'clientDisconnect'. Clean clients get expiry 0, and
// persistent ones `expiryInterval`, the manager's default, or no expiry while
// that default is 0. A session is expired once cleanupExpiredAllocators() has
// removed its allocators. That is
// noticed by a periodic check, when a message is stored for the client, and
// when it reconnects; its stored messages are then released and its
// subscriptions removed from the inner persistence, since the session ended.
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';

import type { Aedes, Client } from 'aedes';
import type { Logger } from 'pino';

import { invalidArgument, MqttAllocatorError } from '../errors';
import { assertManager, GlobalSessionManager } from '../global-manager';
import { getLogger, REFUSAL_LOG_INTERVAL_MS } from '../logging';
import type { PayloadHandle, ThreadLocalSessionManager } from '../thread-manager';
import { assertInterval, assertKnownOptions, assertLogger, assertSeconds } from '../validate';
import { ClientStore, PayloadAccess, StoredEntry, toPacket } from './client-store';
import { DropLog } from './drop-log';
import type {
  AedesPersistence,
  BoundedPersistenceEvents,
  BoundedPersistenceOptions,
  BoundedPersistenceStats,
  ClientStoreStats,
  DropReason,
  OverflowAction,
  PersistenceClient,
  PersistencePacket,
  PersistenceSubscriber,
  PersistenceSubscription,
  StoredPacket,
} from './types';

const POLICIES: ReadonlySet<string> = new Set(['drop-new', 'drop-oldest', 'disconnect']);
const OPTIONS: readonly (keyof BoundedPersistenceOptions)[] = [
  'persistence',
  'manager',
  'policy',
  'clientPolicies',
  'logger',
  'expiryInterval',
  'expiryCheckInterval',
  'logIntervalMs',
];
const DEFAULT_EXPIRY_CHECK_SECONDS = 5;
const EMPTY = new Uint8Array(0);

/** The expiry interval that never ends a session (the MQTT 5 maximum). */
const SESSION_NEVER_EXPIRES = 0xffffffff;

function payloadOf(packet: PersistencePacket): Uint8Array {
  const payload = packet.payload;
  if (payload === undefined) return EMPTY;
  return typeof payload === 'string' ? Buffer.from(payload) : payload;
}

function assertPolicy(name: string, value: unknown): asserts value is OverflowAction {
  if (typeof value !== 'string' || !POLICIES.has(value)) {
    throw invalidArgument(name, value, "'drop-new', 'drop-oldest' or 'disconnect'");
  }
}

// Loaded only when no persistence is given, so that applications passing
// their own persistence do not load aedes-persistence.
function defaultPersistence(): AedesPersistence {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const create = require('aedes-persistence') as () => AedesPersistence;
  return create();
}

/** The part of an Aedes client that records, per broker, the counter of
 * the newest message its connection let through. */
interface DedupingClient {
  duplicates?: Record<string, number>;
}

/**
 * Returns true when Aedes will never send `packet` to `client`. That is the
 * client's own message under no-local, or a message that passed Aedes'
 * duplicate check and was then refused by authorizeForward. A message passed
 * that check when it has no broker id, or when its counter is the newest the
 * connection let through. Returns false for an older message skipped as a
 * duplicate, and for a client without Aedes' record of what it let through.
 */
function neverSent(client: PersistenceClient, packet: PersistencePacket & { nl?: boolean }): boolean {
  if (packet.nl === true && packet.clientId === client.id) return true;
  if (!packet.brokerId) return true;
  const duplicates = (client as DedupingClient).duplicates;
  return duplicates !== undefined && duplicates[packet.brokerId] === packet.brokerCounter;
}

function* copiesOf(store: ClientStore, entries: StoredEntry[]): Generator<StoredPacket> {
  for (const entry of entries) {
    // Entries acknowledged, dropped or cleared since the snapshot are skipped.
    if (store.holds(entry)) yield toPacket(entry, store.payloads);
  }
}

export class BoundedPersistence extends EventEmitter<BoundedPersistenceEvents> implements AedesPersistence {
  /** The persistence that keeps subscriptions, retained messages and wills. */
  readonly inner: AedesPersistence;
  readonly manager: GlobalSessionManager;
  /** Policy for clients that clientPolicies leaves undecided. */
  readonly policy: OverflowAction;
  private readonly clientPolicies: ((clientId: string) => OverflowAction | undefined) | undefined;
  private readonly sessions: ThreadLocalSessionManager;
  private readonly logger: Logger;
  private readonly expiryInterval: number | undefined;
  private readonly expiryCheckMs: number;
  private readonly dropLog: DropLog;
  // Keyed by client id in Maps, never plain objects, because ids come from
  // the wire and may be "__proto__".
  private readonly stores = new Map<string, ClientStore>();
  private readonly expiring = new Map<string, Promise<void>>();
  private readonly totals = { dropped: 0, evicted: 0, disconnected: 0, expiredSessions: 0 };
  private broker: Aedes | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private destroyed = false;
  // Number of the current outgoingEnqueueCombi call, stamped on each store
  // it reaches.
  private enqueueCalls = 0;

  private readonly onClient = (client: Client): void => this.clientConnected(client);
  private readonly onClientDisconnect = (client: Client): void => this.clientDisconnected(client);
  // Aedes closes a client after an error and normally reports it with
  // 'clientDisconnect' too. This covers a close that ends without it.
  private readonly onClientError = (client: Client): void => {
    setImmediate(() => {
      if (client.closed) this.clientDisconnected(client);
    });
  };
  private readonly onClosed = (): void => this.releaseAll();
  private readonly payloads: PayloadAccess = {
    load: (handle, size) => this.sessions.loadPayload(handle, size),
    take: (handle, size) => this.sessions.takePayload(handle, size),
    free: (handle) => {
      try {
        this.sessions.freePayload(handle);
      } catch (error) {
        this.logger.error({ err: error }, 'freeing a stored payload failed; its bytes stay charged until the thread ends');
      }
    },
  };

  constructor(options: BoundedPersistenceOptions = {}) {
    super();
    if (options === null || typeof options !== 'object') {
      throw invalidArgument('options', options, 'an object of BoundedPersistence options');
    }
    assertKnownOptions('options', options, OPTIONS);
    const policy = options.policy ?? 'drop-new';
    assertPolicy('policy', policy);
    if (options.clientPolicies !== undefined && typeof options.clientPolicies !== 'function') {
      throw invalidArgument('clientPolicies', options.clientPolicies, 'a function (clientId) => policy or undefined');
    }
    if (options.expiryInterval !== undefined) assertSeconds('expiryInterval', options.expiryInterval);
    const expiryCheck = options.expiryCheckInterval ?? DEFAULT_EXPIRY_CHECK_SECONDS;
    assertInterval('expiryCheckInterval', expiryCheck, 'seconds');
    const logInterval = options.logIntervalMs ?? REFUSAL_LOG_INTERVAL_MS;
    assertInterval('logIntervalMs', logInterval, 'milliseconds');
    if (options.manager !== undefined) assertManager('manager', options.manager);
    if (options.logger !== undefined) assertLogger('logger', options.logger);
    if (options.persistence !== undefined && (options.persistence === null || typeof options.persistence.setup !== 'function')) {
      throw invalidArgument('persistence', options.persistence, 'an Aedes persistence with an async setup(broker)');
    }

    this.inner = options.persistence ?? defaultPersistence();
    this.manager = options.manager ?? GlobalSessionManager.instance();
    this.sessions = this.manager.getThreadManager();
    this.policy = policy;
    this.clientPolicies = options.clientPolicies;
    this.logger = options.logger ?? getLogger();
    this.expiryInterval = options.expiryInterval;
    this.expiryCheckMs = expiryCheck * 1000;
    this.dropLog = new DropLog(this.logger, logInterval);
  }

  // Aedes requires a real async function here (it checks the constructor name).
  async setup(broker: Aedes): Promise<void> {
    if (this.destroyed) throw new Error('setup failed: this BoundedPersistence was destroyed; create a new one for the broker');
    if (this.broker !== undefined && this.broker !== broker) {
      throw new Error('setup failed: this BoundedPersistence already serves another broker; create one per broker');
    }
    if (this.broker === undefined) {
      this.broker = broker;
      broker.on('client', this.onClient);
      broker.on('clientDisconnect', this.onClientDisconnect);
      broker.on('clientError', this.onClientError);
      broker.on('closed', this.onClosed);
      if (this.expiryCheckMs > 0) {
        this.expiryTimer = setInterval(() => this.sweepExpiredSessions(), this.expiryCheckMs);
        this.expiryTimer.unref();
      }
    }
    await this.inner.setup(broker);
  }

  /** Returns the messages and bytes kept, by client, and the drop counters. */
  stats(): BoundedPersistenceStats {
    const stats: BoundedPersistenceStats = {
      ...this.totals,
      queuedMessages: 0,
      queuedBytes: 0,
      inflightMessages: 0,
      inflightBytes: 0,
      incomingMessages: 0,
      incomingBytes: 0,
      clients: new Map(),
    };
    for (const store of this.stores.values()) {
      const client = store.stats();
      stats.queuedMessages += client.queuedMessages;
      stats.queuedBytes += client.queuedBytes;
      stats.inflightMessages += client.inflightMessages;
      stats.inflightBytes += client.inflightBytes;
      stats.incomingMessages += client.incomingMessages;
      stats.incomingBytes += client.incomingBytes;
      stats.clients.set(store.clientId, client);
    }
    return stats;
  }

  /** Returns what is kept for one client, or undefined for a client without a store. */
  clientStats(clientId: string): ClientStoreStats | undefined {
    return this.stores.get(clientId)?.stats();
  }

  /** Returns the policy applied to `clientId` when a message does not fit. */
  policyFor(clientId: string): OverflowAction {
    const chosen = this.clientPolicies?.(clientId);
    if (chosen === undefined || chosen === this.policy) return this.policy;
    return POLICIES.has(chosen) ? chosen : this.policy;
  }

  /**
   * Releases the stored messages of every offline client whose session was
   * removed by expiry cleanup, and removes its subscriptions from the inner
   * persistence. Runs every `expiryCheckInterval` seconds. Call it after
   * cleanupExpiredAllocators() to release at once. Returns the number of
   * sessions found expired.
   */
  sweepExpiredSessions(): number {
    let expired = 0;
    for (const store of [...this.stores.values()]) {
      if (store.connected || store.expired || this.sessions.hasSession(store.clientId)) continue;
      void this.expire(store);
      expired += 1;
    }
    return expired;
  }

  // --- Outgoing messages: kept here. ---

  async outgoingEnqueue(sub: PersistenceSubscriber, packet: PersistencePacket): Promise<void> {
    if (this.destroyed) return;
    this.enqueueFor(sub.clientId, this.stores.get(sub.clientId), packet, payloadOf(packet));
  }

  async outgoingEnqueueCombi(subs: PersistenceSubscriber[], packet: PersistencePacket): Promise<void> {
    if (this.destroyed || subs.length === 0) return;
    const payload = payloadOf(packet);
    if (subs.length === 1) {
      const clientId = subs[0].clientId;
      this.enqueueFor(clientId, this.stores.get(clientId), packet, payload);
      return;
    }

    // A client matched by several of its subscriptions gets one copy. Each
    // store reached is stamped with this call's number, which costs no Set
    // per message. Once a subscriber has no store (a new client, or one whose
    // session is expiring), the rest of the call checks a Set of the client
    // ids seen instead, because a store may also be removed during the loop.
    this.enqueueCalls += 1;
    const stamp = this.enqueueCalls;
    let seen: Set<string> | undefined;
    for (let i = 0; i < subs.length; i += 1) {
      const clientId = subs[i].clientId;
      const store = this.stores.get(clientId);
      if (store !== undefined && seen === undefined) {
        if (store.stamp === stamp) continue;
        store.stamp = stamp;
      } else {
        seen ??= new Set(subs.slice(0, i).map((sub) => sub.clientId));
        if (seen.has(clientId)) continue;
        seen.add(clientId);
      }
      this.enqueueFor(clientId, store, packet, payload);
    }
  }

  /**
   * Moves a message from queued to inflight once Aedes gave it a packet id,
   * or replaces a QoS 2 payload by its PUBREL once PUBREC arrived. A message
   * not kept here (dropped for this client) is no error, because Aedes then
   * writes it live, without a stored copy for redelivery.
   */
  async outgoingUpdate(client: PersistenceClient, packet: PersistencePacket): Promise<void> {
    const store = this.stores.get(client.id);
    if (store === undefined || packet.messageId === undefined) return;
    if (packet.cmd === 'pubrel') {
      store.markReceived(packet.messageId);
      return;
    }
    store.markInflight(packet.brokerId, packet.brokerCounter, packet.messageId);
  }

  /**
   * Releases a message at PUBACK or PUBCOMP and returns its packet. Aedes
   * passes that packet only to the broker's 'ack' listeners. The packet thus
   * carries a copy of the payload while the broker has such a listener, or
   * while this persistence serves no broker yet. Otherwise the payload is
   * freed without a copy, and the packet has none.
   */
  async outgoingClearMessageId(client: PersistenceClient, packet: PersistencePacket): Promise<StoredPacket | undefined> {
    if (packet.messageId === undefined) {
      this.withholdUnsent(client, packet);
      return undefined;
    }
    const store = this.stores.get(client.id);
    if (store === undefined) return undefined;
    const withPayload = this.broker === undefined || this.broker.listenerCount('ack') > 0;
    return store.acknowledge(packet.messageId, withPayload);
  }

  /**
   * Aedes calls outgoingClearMessageId without a packet id when it does not
   * send a message to the client's connection, for one of three reasons:
   * - authorizeForward refused it;
   * - it is the client's own message and its subscription has no-local;
   * - it is a duplicate: this connection was sent the same message, or a
   *   newer one of the same broker, already.
   * The first two are never sent, so nothing would ever acknowledge their
   * stored copy, which would fill the client's budget for good. Their queued
   * copy is released. A duplicate keeps its copy: an older message skipped
   * on this connection is still owed to the client at its next connect.
   *
   * Here a second send of the same message looks like a refusal, so the
   * release waits one turn. By then the first send has made the copy
   * inflight (Aedes gives it a packet id in a setImmediate queued before
   * this one), and only a copy still queued is released. A message that
   * does not fit releases the client's withheld copies at once (see
   * storeOutgoing), because a burst of refusals can pass within one turn.
   */
  private withholdUnsent(client: PersistenceClient, packet: PersistencePacket): void {
    const store = this.stores.get(client.id);
    if (store === undefined || !neverSent(client, packet)) return;
    const entry = store.withhold(packet.brokerId, packet.brokerCounter);
    if (entry !== undefined) setImmediate(() => store.releaseWithheld(entry));
  }

  /** Returns a stream of the client's outgoing messages in arrival order,
   * each a packet with a payload copy made as the stream is read. */
  outgoingStream(client: PersistenceClient): Readable {
    const store = this.stores.get(client.id);
    if (store === undefined) return Readable.from([]);
    return Readable.from(copiesOf(store, store.outgoingSnapshot()));
  }

  // --- Inbound QoS 2 messages: kept here. ---

  /** Stores an inbound QoS 2 message until PUBREL. Rejects when it does not
   * fit in the publisher's own budget, and Aedes then closes that publisher. */
  async incomingStorePacket(client: PersistenceClient, packet: PersistencePacket): Promise<void> {
    if (this.destroyed) return;
    const store = this.connectedStore(client.id);
    const payload = payloadOf(packet);
    const handle = this.sessions.storePayload(client.id, payload, 'session');
    if (handle === undefined) {
      this.recordDrop(store, client.id, 'disconnect', 'inbound-limit-exceeded', payload.byteLength, packet.topic);
      // Aedes closes the publisher when this rejects.
      this.recordDisconnect(store, 'disconnect');
      throw new MqttAllocatorError(
        'MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED',
        `inbound QoS 2 message of ${payload.byteLength} bytes does not fit in the memory limit of client ${JSON.stringify(client.id)}`,
        { clientId: client.id, requested: payload.byteLength },
      );
    }
    store.storeIncoming(packet, handle, payload.byteLength, this.sessions.storedPayloadCharge());
  }

  async incomingGetPacket(client: PersistenceClient, packet: PersistencePacket): Promise<StoredPacket> {
    const found = this.stores.get(client.id)?.getIncoming(packet.messageId ?? 0);
    // Aedes reads a rejection as "not stored".
    if (found === undefined) throw new Error('no such packet');
    return found;
  }

  async incomingDelPacket(client: PersistenceClient, packet: PersistencePacket): Promise<void> {
    const deleted = this.stores.get(client.id)?.deleteIncoming(packet.messageId ?? 0) ?? false;
    if (!deleted) throw new Error('no such packet');
  }

  async cleanIncoming(client: PersistenceClient): Promise<void> {
    this.stores.get(client.id)?.clearIncoming();
    if (typeof this.inner.cleanIncoming === 'function') await this.inner.cleanIncoming(client);
  }

  // --- Subscriptions: delegated, with the session's lifecycle. ---

  /** Releases the client's outgoing messages on a clean start, then delegates. */
  async cleanSubscriptions(client: PersistenceClient): Promise<unknown> {
    this.stores.get(client.id)?.clearOutgoing();
    return this.inner.cleanSubscriptions(client);
  }

  /** Ends a session that expired while its client was away, then delegates.
   * Aedes calls this as a persistent client connects, so nothing expired is restored. */
  async subscriptionsByClient(client: PersistenceClient): Promise<PersistenceSubscription[]> {
    let pending = this.expiring.get(client.id);
    const store = this.stores.get(client.id);
    if (pending === undefined && store !== undefined && !store.connected && !this.sessions.hasSession(client.id)) {
      pending = this.expire(store);
    }
    if (pending !== undefined) await pending;
    return this.inner.subscriptionsByClient(client);
  }

  addSubscriptions(client: PersistenceClient, subs: PersistenceSubscription[]): Promise<unknown> {
    return this.inner.addSubscriptions(client, subs);
  }

  removeSubscriptions(client: PersistenceClient, topics: string[]): Promise<unknown> {
    return this.inner.removeSubscriptions(client, topics);
  }

  subscriptionsByTopic(topic: string): Promise<PersistenceSubscriber[]> {
    return this.inner.subscriptionsByTopic(topic);
  }

  countOffline(): Promise<{ subsCount: number; clientsCount: number }> {
    return this.inner.countOffline();
  }

  getClientList(topic: string): Readable {
    return this.inner.getClientList(topic);
  }

  // --- Retained messages and wills: delegated. ---

  storeRetained(packet: PersistencePacket): Promise<unknown> {
    return this.inner.storeRetained(packet);
  }

  createRetainedStream(pattern: string): Readable {
    return this.inner.createRetainedStream(pattern);
  }

  createRetainedStreamCombi(patterns: string[]): Readable {
    return this.inner.createRetainedStreamCombi(patterns);
  }

  putWill(client: PersistenceClient, packet: PersistencePacket): Promise<unknown> {
    return this.inner.putWill(client, packet);
  }

  getWill(client: PersistenceClient): Promise<StoredPacket | undefined> {
    return this.inner.getWill(client);
  }

  delWill(client: PersistenceClient): Promise<StoredPacket | undefined> {
    return this.inner.delWill(client);
  }

  streamWill(brokers?: Record<string, number>): Readable {
    return this.inner.streamWill(brokers);
  }

  /**
   * Releases every stored message, unregisters the sessions of clients still
   * connected, stops the timers, logs pending drop counts and destroys the
   * inner persistence. Call it after the broker has closed. A second call
   * does nothing.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.expiryTimer !== undefined) clearInterval(this.expiryTimer);
    this.expiryTimer = undefined;
    const broker = this.broker;
    if (broker !== undefined) {
      broker.removeListener('client', this.onClient);
      broker.removeListener('clientDisconnect', this.onClientDisconnect);
      broker.removeListener('clientError', this.onClientError);
      broker.removeListener('closed', this.onClosed);
    }
    this.releaseAll();
    this.dropLog.flush();
    await this.inner.destroy();
  }

  // --- Internals. ---

  private clientConnected(client: Client): void {
    if (this.destroyed) return;
    const clientId = client.id;
    let resumed: boolean;
    try {
      const expiryInterval = client.clean ? 0 : this.persistentExpiry();
      resumed = this.sessions.registerSession(clientId, { expiryInterval }).resumed;
    } catch (error) {
      // Without a session nothing of the client can be charged, so it cannot
      // be bounded either.
      this.logger.error({ err: error, clientId }, 'registering the session of a connecting client failed; closing its connection');
      client.close();
      return;
    }

    let store = this.stores.get(clientId);
    if (store !== undefined && (store.expired || !resumed)) {
      // The session was removed by expiry cleanup before any check noticed.
      this.endSession(store);
      store = undefined;
    }
    if (store === undefined) {
      store = new ClientStore(clientId, this.payloads);
      this.stores.set(clientId, store);
    }
    store.client = client;
    store.closing = undefined;
  }

  private clientDisconnected(client: Client): void {
    const store = this.stores.get(client.id);
    // Ignored for a connection that another one with the same id replaced.
    if (store === undefined || store.client !== client) return;
    store.client = undefined;
    store.closing = undefined;
    try {
      this.sessions.unregisterSession(client.id);
    } catch (error) {
      this.logger.warn({ err: error, clientId: client.id }, 'unregistering the session of a disconnected client failed');
    }
    if (client.clean) {
      // A clean session ends with its connection.
      store.clear();
      this.stores.delete(client.id);
    }
  }

  /** Returns the store of a connected client. Registers a session for a
   * client that connected before this persistence was set up. */
  private connectedStore(clientId: string): ClientStore {
    let store = this.stores.get(clientId);
    if (store === undefined) {
      if (!this.sessions.hasSession(clientId)) this.sessions.registerSession(clientId, { expiryInterval: this.persistentExpiry() });
      store = new ClientStore(clientId, this.payloads);
      this.stores.set(clientId, store);
    }
    return store;
  }

  // Returns the session expiry of a persistent (clean=false) client: the
  // option, else the manager's default. While that default is 0, the session
  // never expires, because a persistent MQTT 3.1.1 session outlives its
  // connection. The client's limit still bounds what it keeps.
  private persistentExpiry(): number {
    if (this.expiryInterval !== undefined) return this.expiryInterval;
    const fallback = this.manager.getDefaultSessionExpiry();
    return fallback === 0 ? SESSION_NEVER_EXPIRES : fallback;
  }

  /**
   * Returns the store of a subscriber about to get a message, or undefined
   * while its expired session is being removed. `store` is the one found
   * for `clientId`, if any. A subscriber known to the inner persistence but
   * never registered here (a persistence that outlived a restart) gets an
   * offline session now, which expires after its interval.
   */
  private subscriberStore(clientId: string, store: ClientStore | undefined): ClientStore | undefined {
    if (store !== undefined) {
      if (!store.connected && !store.expired && !this.sessions.hasSession(clientId)) void this.expire(store);
      return store;
    }
    if (this.expiring.has(clientId)) return undefined;
    this.sessions.registerSession(clientId, { expiryInterval: this.persistentExpiry() });
    this.sessions.unregisterSession(clientId);
    const created = new ClientStore(clientId, this.payloads);
    this.stores.set(clientId, created);
    return created;
  }

  // Catches every error, because a failure for one subscriber must not reach
  // the publisher. Event listeners are guarded in emitSafely. `found` is the
  // client's store as looked up by the caller. The policy is looked up only
  // when a message is stored or dropped, not for a duplicate.
  private enqueueFor(clientId: string, found: ClientStore | undefined, packet: PersistencePacket, payload: Uint8Array): void {
    const bytes = payload.byteLength;
    let store: ClientStore | undefined;
    try {
      store = this.subscriberStore(clientId, found);
      if (store === undefined || store.expired) {
        this.recordDrop(store, clientId, this.policyFor(clientId), 'session-expired', bytes, packet.topic);
        return;
      }
      if (store.holdsMessage(packet.brokerId, packet.brokerCounter)) return;

      // Looked up before storing, because 'drop-oldest' evicts first.
      const policy = this.policyFor(clientId);
      const handle = this.storeOutgoing(store, payload, policy);
      if (handle === undefined) {
        this.recordDrop(store, clientId, policy, 'limit-exceeded', bytes, packet.topic);
        if (policy === 'disconnect') this.disconnect(store, policy);
        return;
      }
      store.enqueue(packet, handle, bytes, this.sessions.storedPayloadCharge());
    } catch (error) {
      this.logger.debug({ err: error, clientId }, 'storing a message failed: the subscriber has no session here; the message is dropped for it');
      this.recordDrop(store, clientId, this.policyFor(clientId), 'no-session', bytes, packet.topic);
    }
  }

  /**
   * Stores `payload` in the client's queue allocator. When it does not fit,
   * the client's withheld copies are released first, then its oldest
   * messages under 'drop-oldest'. Returns undefined when it still does not
   * fit. A withheld copy is of a refused message, which is never sent, or
   * of a message sent twice in this turn, which loses only its copy for
   * redelivery, as a drop would.
   */
  private storeOutgoing(store: ClientStore, payload: Uint8Array, policy: OverflowAction): PayloadHandle | undefined {
    const clientId = store.clientId;
    const size = payload.byteLength;
    const evicting = policy === 'drop-oldest';
    if ((evicting || store.withholding) && !this.sessions.hasRoomFor(clientId, size)) {
      // A message that would not fit even with every queued message gone
      // never fits: evicting for it would only empty the queue. It is still
      // offered to the allocator, which counts and reports the refusal.
      if (evicting && !this.sessions.hasRoomFor(clientId, size, store.queuedCharged)) {
        return this.sessions.storePayload(clientId, payload, 'queue');
      }
      // Releasing and evicting up front spares the allocator a refusal, each
      // reported as a 'limitExceeded' event, per step.
      store.releaseAllWithheld();
      while (evicting && !this.sessions.hasRoomFor(clientId, size) && this.evictOldest(store));
    }
    // Other threads may take room of the thread and process limits meanwhile.
    for (;;) {
      const handle = this.sessions.storePayload(store.clientId, payload, 'queue');
      if (handle !== undefined) return handle;
      if (store.releaseAllWithheld() > 0) continue;
      if (policy !== 'drop-oldest' || !this.evictOldest(store)) return undefined;
    }
  }

  private evictOldest(store: ClientStore): boolean {
    const entry = store.evictOldest();
    if (entry === undefined) return false;
    store.evicted += 1;
    this.totals.evicted += 1;
    this.recordDrop(store, store.clientId, 'drop-oldest', 'evicted', entry.bytes, entry.topic);
    return true;
  }

  private recordDrop(
    store: ClientStore | undefined,
    clientId: string,
    policy: OverflowAction,
    reason: DropReason,
    bytes: number,
    topic: string | undefined,
  ): void {
    if (store !== undefined) store.dropped += 1;
    this.totals.dropped += 1;
    this.dropLog.recordDrop(clientId, policy, reason);
    if (this.listenerCount('drop') > 0) this.emitSafely('drop', { clientId, policy, reason, bytes, topic });
  }

  // Events are emitted inside the publisher's flow, so a throwing listener is
  // logged rather than allowed to reach the publisher.
  private emitSafely<K extends keyof BoundedPersistenceEvents>(event: K, ...args: BoundedPersistenceEvents[K]): void {
    try {
      // The cast only restates the event map, which TypeScript cannot narrow for a generic key.
      (this.emit as (name: K, ...rest: BoundedPersistenceEvents[K]) => boolean)(event, ...args);
    } catch (error) {
      this.logger.error({ err: error, event }, `a '${event}' listener of BoundedPersistence threw; fix the listener`);
    }
  }

  private disconnect(store: ClientStore, policy: OverflowAction): void {
    const client = this.recordDisconnect(store, policy);
    // Closed on a later turn: this runs inside the publisher's flow, which
    // must finish undisturbed.
    if (client !== undefined) setImmediate(() => client.close());
  }

  /**
   * Counts, emits and logs the closing of the client's open connection, and
   * returns that connection. Returns undefined, recording nothing, when no
   * connection is open or its closing was recorded already.
   */
  private recordDisconnect(store: ClientStore, policy: OverflowAction): Client | undefined {
    const client = store.client;
    if (client === undefined || client.closed || store.closing === client) return undefined;
    store.closing = client;
    store.disconnected += 1;
    this.totals.disconnected += 1;
    this.dropLog.recordDisconnect(store.clientId, policy);
    this.emitSafely('disconnect', { clientId: store.clientId });
    return client;
  }

  /** Releases an expired session's messages and removes its store. */
  private endSession(store: ClientStore): void {
    const released = store.clear();
    store.expired = true;
    if (this.stores.get(store.clientId) === store) this.stores.delete(store.clientId);
    this.totals.expiredSessions += 1;
    this.logger.info({ clientId: store.clientId, ...released }, 'session expired; its stored messages were released');
    if (this.listenerCount('expired') > 0) this.emitSafely('expired', { clientId: store.clientId, ...released });
  }

  /** Ends an expired session: its messages are released at once, then its
   * subscriptions are removed from the inner persistence. */
  private expire(store: ClientStore): Promise<void> {
    const clientId = store.clientId;
    const pending = this.expiring.get(clientId);
    if (pending !== undefined) return pending;
    this.endSession(store);
    if (this.destroyed) return Promise.resolve();

    const cleaning = this.cleanInner({ id: clientId }).finally(() => {
      if (this.expiring.get(clientId) === cleaning) this.expiring.delete(clientId);
    });
    this.expiring.set(clientId, cleaning);
    return cleaning;
  }

  private async cleanInner(client: PersistenceClient): Promise<void> {
    try {
      await this.inner.cleanSubscriptions(client);
      if (typeof this.inner.cleanIncoming === 'function') await this.inner.cleanIncoming(client);
    } catch (error) {
      this.logger.warn({ err: error, clientId: client.id }, 'removing the subscriptions of an expired session failed');
    }
  }

  private releaseAll(): void {
    for (const store of this.stores.values()) {
      if (store.client !== undefined) {
        try {
          this.sessions.unregisterSession(store.clientId);
        } catch (error) {
          this.logger.warn({ err: error, clientId: store.clientId }, 'unregistering a session failed');
        }
      }
      store.clear();
    }
    this.stores.clear();
  }
}

/** Wraps an Aedes persistence (by default the in-memory aedes-persistence) so
 * that each client's session messages are charged to it and bounded. */
export function createBoundedPersistence(options: BoundedPersistenceOptions = {}): BoundedPersistence {
  return new BoundedPersistence(options);
}
