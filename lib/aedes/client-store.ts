// ClientStore: what BoundedPersistence keeps for one client — its outgoing
// messages (queued, then inflight once Aedes gives them a packet id) and its
// inbound QoS 2 messages — each payload a native payload block charged to
// the client (ThreadLocalSessionManager.storePayload), with no Buffer while
// it waits.
//
// Contract: packets handed to Aedes carry V8 copies made when Aedes requests
// them. A payload may thus be freed at any moment (ack, eviction, clean
// start, expiry, close), because no socket write handed to libuv ever points
// into it.
import { Buffer } from 'node:buffer';

import type { Client } from 'aedes';

import type { PayloadHandle } from '../thread-manager';
import { ArrivalQueue, Queueable } from './arrival-queue';
import { isNamed, MessageIndex, NamedMessage, sourceOf } from './message-index';
import type { ClientStoreStats, PersistencePacket, StoredPacket } from './types';

/** Stored message around its payload block `payload`, which is undefined
 * once freed. An outgoing QoS 2 message that reached PUBREC keeps its entry
 * without payload, as a PUBREL to resend. */
export interface StoredEntry extends NamedMessage, Queueable {
  /** Arrival order within the client, so that redelivery keeps it. */
  readonly seq: number;
  cmd: 'publish' | 'pubrel';
  readonly topic: string | undefined;
  readonly qos: number;
  readonly retain: boolean;
  readonly dup: boolean;
  readonly properties: unknown;
  readonly messageExpiry: number | undefined;
  payload: PayloadHandle | undefined;
  /** Payload bytes in `payload`. */
  bytes: number;
  /** Bytes charged for `payload`: the backend's usable size. */
  readonly charged: number;
}

/** Reads and frees payload blocks of the thread that stored them. */
export interface PayloadAccess {
  /** Copies the payload out; `size` is its length in bytes. */
  load(handle: PayloadHandle, size: number): Buffer;
  /** Copies the payload out and frees it. */
  take(handle: PayloadHandle, size: number): Buffer;
  free(handle: PayloadHandle): void;
}

/**
 * Builds the entry for `packet` around its payload block of `bytes` bytes,
 * charged `charged` bytes. Every field is set here, so that all entries
 * share one object shape.
 */
export function createEntry(
  seq: number,
  packet: PersistencePacket,
  payload: PayloadHandle,
  bytes: number,
  charged: number,
  messageId: number | undefined,
): StoredEntry {
  return {
    seq,
    source: sourceOf(packet.brokerId),
    cmd: 'publish',
    brokerId: packet.brokerId,
    brokerCounter: packet.brokerCounter,
    topic: packet.topic,
    qos: packet.qos ?? 0,
    retain: packet.retain ?? false,
    dup: packet.dup ?? false,
    properties: packet.properties,
    messageExpiry: packet.messageExpiry,
    messageId,
    payload,
    bytes,
    charged,
    owner: undefined,
  };
}

/** The use toPacket makes of the entry's payload block. */
export type PayloadUse =
  /** Copies it into the packet and keeps it. */
  | 'copy'
  /** Copies it into the packet and frees it. */
  | 'take'
  /** Frees it and leaves the packet without payload. */
  | 'free';

/** Returns the payload the entry's packet carries, as `use` selects. A block
 * that is freed is cleared from the entry first, so that a throwing free can
 * never be retried on its handle. */
function packetPayload(entry: StoredEntry, payloads: PayloadAccess, use: PayloadUse): Buffer | undefined {
  const handle = entry.payload;
  if (handle === undefined) return use === 'free' ? undefined : Buffer.alloc(0);
  if (use === 'copy') return payloads.load(handle, entry.bytes);
  entry.payload = undefined;
  if (use === 'take') return payloads.take(handle, entry.bytes);
  payloads.free(handle);
  return undefined;
}

/** Builds the packet Aedes gets for an entry: a plain object with a V8 copy
 * of the payload, so nothing Aedes writes points into a payload block. */
export function toPacket(entry: StoredEntry, payloads: PayloadAccess, use: PayloadUse = 'copy'): StoredPacket {
  if (entry.cmd === 'pubrel') return { cmd: 'pubrel', messageId: entry.messageId };
  const packet: StoredPacket = {
    cmd: 'publish',
    brokerId: entry.brokerId,
    brokerCounter: entry.brokerCounter,
    topic: entry.topic,
    payload: packetPayload(entry, payloads, use),
    qos: entry.qos,
    retain: entry.retain,
    dup: entry.dup,
  };
  if (entry.messageId !== undefined) packet.messageId = entry.messageId;
  if (entry.properties !== undefined) packet.properties = entry.properties;
  if (entry.messageExpiry !== undefined) packet.messageExpiry = entry.messageExpiry;
  return packet;
}

/** Outgoing messages above which a store finds them through a
 * MessageIndex. It drops the index once it keeps half as many, so that a
 * store near the threshold does not build one per message. */
const INDEX_FROM = 64;

export class ClientStore {
  /** The connection now open for this client, if any. */
  client: Client | undefined;
  /** Connection this store closed for overflow, so that it is closed once only. */
  closing: Client | undefined;
  /** True once the session expired and its messages were released. */
  expired = false;

  /** Number of the last outgoingEnqueueCombi call that reached this store,
   * so that a client matched by several subscriptions gets one copy. */
  stamp = 0;

  // Outgoing entries: queued in arrival order, and inflight in the order
  // they were sent. Aedes sends the oldest queued entry next, and clients
  // mostly acknowledge the oldest inflight one, so most lookups end at the
  // front of a list.
  private readonly queued = new ArrivalQueue<StoredEntry>();
  private readonly inflight = new ArrivalQueue<StoredEntry>();
  // Built once more than INDEX_FROM outgoing entries are kept and a lookup
  // misses the front of the lists.
  private index: MessageIndex<StoredEntry> | undefined;
  // While `countingUp` is true, every outgoing entry came from the broker
  // `newestSource` with a number as counter, and `newestCounter` is the
  // highest of them. Brokers count up, so a message of that broker with a
  // higher counter is new without a search.
  private countingUp = false;
  private newestSource: string | undefined;
  private newestCounter = 0;
  // No inflight entry has a packet id above this one. Aedes counts packet
  // ids up, so a new id is mostly above it and needs no search. It is raised
  // as ids are given, and lowered to the true highest id whenever the
  // inflight list is walked, such as after packet ids wrapped at 65535.
  private packetIdCeiling = 0;
  // Entries of messages that Aedes did not send to the connection. Each is
  // released one turn later if it is still queued then.
  private readonly withheld = new Set<StoredEntry>();
  private readonly incoming = new Map<number, StoredEntry>();
  private nextSeq = 0;
  private queuedBytes = 0;
  private queuedCharge = 0;
  private inflightBytes = 0;
  private incomingBytes = 0;

  dropped = 0;
  evicted = 0;
  disconnected = 0;

  constructor(
    readonly clientId: string,
    readonly payloads: PayloadAccess,
  ) {}

  get connected(): boolean {
    return this.client !== undefined;
  }

  /** Number of messages kept, outgoing and inbound. */
  get messages(): number {
    return this.queued.size + this.inflight.size + this.incoming.size;
  }

  /** Payload bytes kept, outgoing and inbound. */
  get bytes(): number {
    return this.queuedBytes + this.inflightBytes + this.incomingBytes;
  }

  /** Returns the outgoing entry of the message that brokerId and
   * brokerCounter name, or undefined when none is kept. */
  private findOutgoing(brokerId: string | undefined, brokerCounter: number | undefined): StoredEntry | undefined {
    const index = this.indexForLookup();
    if (index !== undefined) return index.find(brokerId, brokerCounter);
    const source = sourceOf(brokerId);
    return this.queued.find(isNamed, source, brokerCounter) ?? this.inflight.find(isNamed, source, brokerCounter);
  }

  /** Returns true when an outgoing entry is kept for the message that
   * brokerId and brokerCounter name. */
  holdsMessage(brokerId: string | undefined, brokerCounter: number | undefined): boolean {
    const outgoing = this.queued.size + this.inflight.size;
    if (outgoing === 0) return false;
    if (this.countingUp && typeof brokerCounter === 'number' && brokerCounter > this.newestCounter && brokerId === this.newestSource) {
      return false;
    }
    return this.findOutgoing(brokerId, brokerCounter) !== undefined;
  }

  /** Bytes charged for the queued messages' payloads: what evicting every
   * queued message would release. */
  get queuedCharged(): number {
    return this.queuedCharge;
  }

  /** Appends a new queued message whose payload block was charged `charged`
   * bytes. The caller has checked with holdsMessage() that no entry exists
   * for the packet. */
  enqueue(packet: PersistencePacket, payload: PayloadHandle, bytes: number, charged: number): StoredEntry {
    const entry = createEntry(this.nextSeq++, packet, payload, bytes, charged, undefined);
    this.noteCounter(entry);
    this.queued.push(entry);
    this.index?.add(entry);
    this.queuedBytes += bytes;
    this.queuedCharge += charged;
    return entry;
  }

  /** Drops the oldest queued message and returns it (already released), or
   * undefined when nothing is queued. Inflight messages are never evicted,
   * because they were sent and only wait for their acknowledgement. */
  evictOldest(): StoredEntry | undefined {
    const entry = this.queued.first();
    if (entry === undefined) return undefined;
    this.discardQueued(entry);
    return entry;
  }

  /**
   * Marks the queued entry of a message that Aedes did not send to the
   * client's connection, for releaseWithheld(). Returns the entry, or
   * undefined when the message is not queued here.
   */
  withhold(brokerId: string | undefined, brokerCounter: number | undefined): StoredEntry | undefined {
    if (this.queued.size === 0) return undefined;
    const entry = this.findOutgoing(brokerId, brokerCounter);
    if (entry === undefined || !this.queued.has(entry)) return undefined;
    this.withheld.add(entry);
    return entry;
  }

  /** Releases `entry` if it is still withheld and queued, and returns
   * whether it was. An entry sent since withhold() is kept. */
  releaseWithheld(entry: StoredEntry): boolean {
    if (!this.withheld.delete(entry)) return false;
    return this.discardQueued(entry);
  }

  /** True while some entry is withheld. */
  get withholding(): boolean {
    return this.withheld.size !== 0;
  }

  /** Releases every withheld entry still queued, and returns their count. */
  releaseAllWithheld(): number {
    let released = 0;
    for (const entry of this.withheld) {
      if (this.releaseWithheld(entry)) released += 1;
    }
    return released;
  }

  // Releases `entry` if it is queued, and returns whether it was.
  private discardQueued(entry: StoredEntry): boolean {
    if (!this.queued.has(entry)) return false;
    this.queued.remove(entry);
    this.forget(entry);
    this.queuedBytes -= entry.bytes;
    this.queuedCharge -= entry.charged;
    this.free(entry);
    return true;
  }

  /**
   * Moves an entry from queued to inflight once Aedes gave it a packet id,
   * just before writing it. Returns false when the message is not kept (it
   * was dropped, or never stored because it did not fit).
   */
  markInflight(brokerId: string | undefined, brokerCounter: number | undefined, messageId: number): boolean {
    const entry = this.sentEntry(brokerId, brokerCounter);
    if (entry === undefined) return false;
    if (entry.messageId === messageId) return true;

    // A packet id names one entry: the one that got it last.
    const holder = this.packetIdHolder(messageId);
    if (holder !== undefined) {
      this.index?.setMessageId(holder, undefined);
      holder.messageId = undefined;
    }
    if (this.queued.has(entry)) {
      this.queued.remove(entry);
      this.queuedBytes -= entry.bytes;
      this.queuedCharge -= entry.charged;
      this.inflight.push(entry);
      this.inflightBytes += entry.bytes;
    }
    this.index?.setMessageId(entry, messageId);
    entry.messageId = messageId;
    if (messageId > this.packetIdCeiling) this.packetIdCeiling = messageId;
    return true;
  }

  /** Releases the payload of an outgoing QoS 2 message at PUBREC, since the
   * client has it, and keeps a PUBREL to resend. */
  markReceived(messageId: number): boolean {
    const entry = this.inflightEntry(messageId);
    if (entry === undefined) return false;
    this.inflightBytes -= entry.bytes;
    this.free(entry);
    entry.bytes = 0;
    entry.cmd = 'pubrel';
    return true;
  }

  /** Removes an inflight entry at PUBACK or PUBCOMP, frees its payload and
   * returns its packet: with a copy of the payload when `withPayload` is
   * true, else without payload. */
  acknowledge(messageId: number, withPayload: boolean): StoredPacket | undefined {
    const entry = this.inflightEntry(messageId);
    if (entry === undefined) return undefined;
    this.inflight.remove(entry);
    this.forget(entry);
    this.inflightBytes -= entry.bytes;
    return toPacket(entry, this.payloads, withPayload ? 'take' : 'free');
  }

  /** Returns the outgoing entries, inflight and queued, in arrival order,
   * which is what a reconnecting client gets resent. */
  outgoingSnapshot(): StoredEntry[] {
    const entries = [...this.inflight.values(), ...this.queued.values()];
    return entries.sort((a, b) => a.seq - b.seq);
  }

  /** Returns true while `entry` is still kept (not acknowledged, evicted or cleared). */
  holds(entry: StoredEntry): boolean {
    return this.queued.has(entry) || this.inflight.has(entry);
  }

  /** Stores an inbound QoS 2 message until PUBREL. Replaces (and releases)
   * one stored under the same packet id. */
  storeIncoming(packet: PersistencePacket, payload: PayloadHandle, bytes: number, charged: number): void {
    const messageId = packet.messageId ?? 0;
    this.deleteIncoming(messageId);
    const entry = createEntry(this.nextSeq++, packet, payload, bytes, charged, messageId);
    this.incoming.set(messageId, entry);
    this.incomingBytes += entry.bytes;
  }

  getIncoming(messageId: number): StoredPacket | undefined {
    const entry = this.incoming.get(messageId);
    return entry === undefined ? undefined : toPacket(entry, this.payloads);
  }

  deleteIncoming(messageId: number): boolean {
    const entry = this.incoming.get(messageId);
    if (entry === undefined) return false;
    this.incoming.delete(messageId);
    this.incomingBytes -= entry.bytes;
    this.free(entry);
    return true;
  }

  /** Releases every outgoing message and returns their count and bytes. */
  clearOutgoing(): { messages: number; bytes: number } {
    const messages = this.queued.size + this.inflight.size;
    const bytes = this.queuedBytes + this.inflightBytes;
    for (const entry of this.queued.values()) this.free(entry);
    for (const entry of this.inflight.values()) this.free(entry);
    this.queued.clear();
    this.inflight.clear();
    this.withheld.clear();
    this.forget(undefined);
    this.queuedBytes = 0;
    this.queuedCharge = 0;
    this.inflightBytes = 0;
    return { messages, bytes };
  }

  /** Releases every inbound QoS 2 message and returns their count and bytes. */
  clearIncoming(): { messages: number; bytes: number } {
    const messages = this.incoming.size;
    const bytes = this.incomingBytes;
    for (const entry of this.incoming.values()) this.free(entry);
    this.incoming.clear();
    this.incomingBytes = 0;
    return { messages, bytes };
  }

  /** Releases everything the store keeps. */
  clear(): { messages: number; bytes: number } {
    const outgoing = this.clearOutgoing();
    const incoming = this.clearIncoming();
    return { messages: outgoing.messages + incoming.messages, bytes: outgoing.bytes + incoming.bytes };
  }

  stats(): ClientStoreStats {
    return {
      clientId: this.clientId,
      connected: this.connected,
      queuedMessages: this.queued.size,
      queuedBytes: this.queuedBytes,
      inflightMessages: this.inflight.size,
      inflightBytes: this.inflightBytes,
      incomingMessages: this.incoming.size,
      incomingBytes: this.incomingBytes,
      dropped: this.dropped,
      evicted: this.evicted,
      disconnected: this.disconnected,
    };
  }

  // Returns the entry that Aedes is about to send: most often the oldest
  // queued one, or the oldest inflight one when a reconnecting client gets
  // its messages again.
  private sentEntry(brokerId: string | undefined, brokerCounter: number | undefined): StoredEntry | undefined {
    const source = sourceOf(brokerId);
    const next = this.queued.first();
    if (next !== undefined && isNamed(next, source, brokerCounter)) return next;
    const resent = this.inflight.first();
    if (resent !== undefined && isNamed(resent, source, brokerCounter)) return resent;
    return this.findOutgoing(brokerId, brokerCounter);
  }

  // Returns the inflight entry with packet id `messageId`: most often the
  // oldest one, since clients acknowledge in order.
  private inflightEntry(messageId: number): StoredEntry | undefined {
    const oldest = this.inflight.first();
    if (oldest !== undefined && oldest.messageId === messageId) return oldest;
    return this.packetIdHolder(messageId);
  }

  // Returns the inflight entry with packet id `messageId`, searched in full.
  // A walk of the list also lowers the ceiling to the highest id found.
  private packetIdHolder(messageId: number): StoredEntry | undefined {
    if (this.inflight.size === 0 || messageId > this.packetIdCeiling) return undefined;
    const index = this.indexForLookup();
    if (index !== undefined) return index.findByMessageId(messageId);

    let holder: StoredEntry | undefined;
    let highest = 0;
    for (const entry of this.inflight.values()) {
      const id = entry.messageId;
      if (id === messageId) holder = entry;
      if (id !== undefined && id > highest) highest = id;
    }
    this.packetIdCeiling = highest;
    return holder;
  }

  // Returns the index, built now when the store keeps so many outgoing
  // entries that walking the lists would cost more, or undefined while
  // walking them is cheaper.
  private indexForLookup(): MessageIndex<StoredEntry> | undefined {
    if (this.index !== undefined || this.queued.size + this.inflight.size <= INDEX_FROM) return this.index;
    const index = new MessageIndex<StoredEntry>();
    for (const entry of this.inflight.values()) index.add(entry);
    for (const entry of this.queued.values()) index.add(entry);
    this.index = index;
    return index;
  }

  // Records the counter of a new outgoing entry for holdsMessage(). Called
  // before the entry joins a list.
  private noteCounter(entry: StoredEntry): void {
    const counter = entry.brokerCounter;
    if (typeof counter !== 'number' || counter !== counter) {
      this.countingUp = false;
    } else if (this.queued.size + this.inflight.size === 0) {
      this.countingUp = true;
      this.newestSource = entry.brokerId;
      this.newestCounter = counter;
    } else if (this.countingUp && entry.brokerId === this.newestSource) {
      if (counter > this.newestCounter) this.newestCounter = counter;
    } else {
      this.countingUp = false;
    }
  }

  // Takes an outgoing entry, already out of its list, out of the lookups.
  // Without an entry, the lists were cleared. Once the store keeps few
  // entries, the index goes, and once none, what noteCounter() learnt.
  private forget(entry: StoredEntry | undefined): void {
    if (entry !== undefined) this.index?.remove(entry);
    const outgoing = this.queued.size + this.inflight.size;
    if (this.index !== undefined && outgoing <= INDEX_FROM / 2) this.index = undefined;
    if (this.inflight.size === 0) this.packetIdCeiling = 0;
    if (outgoing === 0) this.countingUp = false;
  }

  private free(entry: StoredEntry): void {
    const payload = entry.payload;
    if (payload === undefined) return;
    // Cleared before freeing, so that a throwing free can never be retried
    // on the same handle.
    entry.payload = undefined;
    this.payloads.free(payload);
  }
}
