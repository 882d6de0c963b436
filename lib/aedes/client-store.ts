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
import { ArrivalQueue } from './arrival-queue';
import type { ClientStoreStats, PersistencePacket, StoredPacket } from './types';

/** Stored message around its payload block `payload`, which is undefined
 * once freed. An outgoing QoS 2 message that reached PUBREC keeps its entry
 * without payload, as a PUBREL to resend. */
export interface StoredEntry {
  /** Arrival order within the client, so that redelivery keeps it. */
  readonly seq: number;
  /** The brokerId in the form that matching compares (see sourceOf), so
   * that an entry found by its brokerCounter is checked against its broker. */
  readonly source: string;
  /** Key of the entry in the store's fallback index, or undefined for an
   * entry indexed by its brokerCounter alone. */
  readonly fallbackKey: string | undefined;
  cmd: 'publish' | 'pubrel';
  readonly brokerId: string | undefined;
  readonly brokerCounter: number | undefined;
  readonly topic: string | undefined;
  readonly qos: number;
  readonly retain: boolean;
  readonly dup: boolean;
  readonly properties: unknown;
  readonly messageExpiry: number | undefined;
  messageId: number | undefined;
  payload: PayloadHandle | undefined;
  /** True while the entry waits in the store's queue, before it goes inflight. */
  queued: boolean;
  /** Payload bytes in `payload`. */
  bytes: number;
}

/** Reads and frees payload blocks of the thread that stored them. */
export interface PayloadAccess {
  /** Copies the payload out; `size` is its length in bytes. */
  load(handle: PayloadHandle, size: number): Buffer;
  /** Copies the payload out and frees it. */
  take(handle: PayloadHandle, size: number): Buffer;
  free(handle: PayloadHandle): void;
}

/** Returns the brokerId as messages are matched by it: a missing one
 * matches '', and one that is not a string matches its string form. */
export function sourceOf(brokerId: string | undefined): string {
  return typeof brokerId === 'string' ? brokerId : `${brokerId ?? ''}`;
}

/** Returns the key that names a message in the fallback index: brokerId and
 * brokerCounter, each compared by its string form. */
export function entryKey(brokerId: string | undefined, brokerCounter: number | undefined): string {
  return `${brokerId ?? ''}\u0000${brokerCounter ?? ''}`;
}

/** Returns the number that a counter of another type spells (5 for '5'),
 * or undefined when it spells none. Such a counter matches that number's
 * entry, because entries are matched by the string forms of their keys. */
function numberNamedBy(brokerCounter: unknown): number | undefined {
  if (brokerCounter === undefined || brokerCounter === null) return undefined;
  const counter = Number(brokerCounter);
  return `${counter}` === `${brokerCounter}` ? counter : undefined;
}

/**
 * Builds the entry for `packet` around its payload block of `bytes` bytes.
 * Every field is set here, so that all entries share one object shape.
 */
export function createEntry(
  seq: number,
  packet: PersistencePacket,
  payload: PayloadHandle,
  bytes: number,
  messageId: number | undefined,
  fallbackKey: string | undefined,
): StoredEntry {
  return {
    seq,
    source: sourceOf(packet.brokerId),
    fallbackKey,
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
    queued: false,
  };
}

/** Returns a copy of the entry's payload. With `take`, the block is freed
 * with the copy and the entry no longer names it. */
function payloadCopy(entry: StoredEntry, payloads: PayloadAccess, take: boolean): Buffer {
  const handle = entry.payload;
  if (handle === undefined) return Buffer.alloc(0);
  if (!take) return payloads.load(handle, entry.bytes);
  // Cleared first, so that a throwing take can never be retried on the handle.
  entry.payload = undefined;
  return payloads.take(handle, entry.bytes);
}

/** Builds the packet Aedes gets for an entry: a plain object with a V8 copy
 * of the payload, so nothing Aedes writes points into a payload block. With
 * `take`, the payload block is freed as it is copied. */
export function toPacket(entry: StoredEntry, payloads: PayloadAccess, take = false): StoredPacket {
  if (entry.cmd === 'pubrel') return { cmd: 'pubrel', messageId: entry.messageId };
  const packet: StoredPacket = {
    cmd: 'publish',
    brokerId: entry.brokerId,
    brokerCounter: entry.brokerCounter,
    topic: entry.topic,
    payload: payloadCopy(entry, payloads, take),
    qos: entry.qos,
    retain: entry.retain,
    dup: entry.dup,
  };
  if (entry.messageId !== undefined) packet.messageId = entry.messageId;
  if (entry.properties !== undefined) packet.properties = entry.properties;
  if (entry.messageExpiry !== undefined) packet.messageExpiry = entry.messageExpiry;
  return packet;
}

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

  // Queued entries in arrival order, and inflight entries by packet id.
  private readonly queued = new ArrivalQueue<StoredEntry>();
  private readonly inflight = new Map<number, StoredEntry>();
  // Every outgoing entry, by the brokerCounter that names its message: a
  // number key costs no string per lookup. The entry's source distinguishes
  // messages of other brokers with the same counter. An entry whose counter
  // is not a number, or whose counter is taken by another broker's message,
  // is kept in `fallback` under its entryKey instead. A message is thus
  // matched as by its entryKey alone, and is kept in one index only.
  private readonly byCounter = new Map<number, StoredEntry>();
  private readonly fallback = new Map<string, StoredEntry>();
  private readonly incoming = new Map<number, StoredEntry>();
  private nextSeq = 0;
  private queuedBytes = 0;
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
  findOutgoing(brokerId: string | undefined, brokerCounter: number | undefined): StoredEntry | undefined {
    const counter = typeof brokerCounter === 'number' ? brokerCounter : numberNamedBy(brokerCounter);
    if (counter !== undefined) {
      const entry = this.byCounter.get(counter);
      if (entry !== undefined && entry.source === sourceOf(brokerId)) return entry;
    }
    return this.fallback.size === 0 ? undefined : this.fallback.get(entryKey(brokerId, brokerCounter));
  }

  /** Appends a new queued message. The caller has checked with
   * findOutgoing() that no entry exists for the packet. */
  enqueue(packet: PersistencePacket, payload: PayloadHandle, bytes: number): StoredEntry {
    const counter = packet.brokerCounter;
    const indexed = typeof counter === 'number' && !this.byCounter.has(counter);
    const entry = createEntry(this.nextSeq++, packet, payload, bytes, undefined, indexed ? undefined : entryKey(packet.brokerId, counter));
    this.queued.push(entry);
    if (entry.fallbackKey === undefined) this.byCounter.set(counter as number, entry);
    else this.fallback.set(entry.fallbackKey, entry);
    this.queuedBytes += bytes;
    return entry;
  }

  /** Drops the oldest queued message and returns it (already released), or
   * undefined when nothing is queued. Inflight messages are never evicted,
   * because they were sent and only wait for their acknowledgement. */
  evictOldest(): StoredEntry | undefined {
    const entry = this.queued.first();
    if (entry === undefined) return undefined;
    this.queued.remove(entry);
    this.unindex(entry);
    this.queuedBytes -= entry.bytes;
    this.free(entry);
    return entry;
  }

  /**
   * Moves an entry from queued to inflight once Aedes gave it a packet id,
   * just before writing it. Returns false when the message is not kept (it
   * was dropped, or never stored because it did not fit).
   */
  markInflight(brokerId: string | undefined, brokerCounter: number | undefined, messageId: number): boolean {
    const entry = this.findOutgoing(brokerId, brokerCounter);
    if (entry === undefined) return false;
    if (entry.messageId === undefined) {
      this.queued.remove(entry);
      this.queuedBytes -= entry.bytes;
      this.inflightBytes += entry.bytes;
    } else if (entry.messageId !== messageId) {
      this.inflight.delete(entry.messageId);
    }
    entry.messageId = messageId;
    this.inflight.set(messageId, entry);
    return true;
  }

  /** Releases the payload of an outgoing QoS 2 message at PUBREC, since the
   * client has it, and keeps a PUBREL to resend. */
  markReceived(messageId: number): boolean {
    const entry = this.inflight.get(messageId);
    if (entry === undefined) return false;
    this.inflightBytes -= entry.bytes;
    this.free(entry);
    entry.bytes = 0;
    entry.cmd = 'pubrel';
    return true;
  }

  /** Removes an inflight entry at PUBACK or PUBCOMP and returns its packet,
   * with a copy of its payload. */
  acknowledge(messageId: number): StoredPacket | undefined {
    const entry = this.inflight.get(messageId);
    if (entry === undefined) return undefined;
    this.inflight.delete(messageId);
    this.unindex(entry);
    this.inflightBytes -= entry.bytes;
    return toPacket(entry, this.payloads, true);
  }

  /** Returns the outgoing entries, inflight and queued, in arrival order,
   * which is what a reconnecting client gets resent. */
  outgoingSnapshot(): StoredEntry[] {
    const entries = [...this.inflight.values(), ...this.queued.values()];
    return entries.sort((a, b) => a.seq - b.seq);
  }

  /** Returns true while `entry` is still kept (not acknowledged, evicted or cleared). */
  holds(entry: StoredEntry): boolean {
    if (entry.fallbackKey !== undefined) return this.fallback.get(entry.fallbackKey) === entry;
    return this.byCounter.get(entry.brokerCounter as number) === entry;
  }

  /** Stores an inbound QoS 2 message until PUBREL. Replaces (and releases)
   * one stored under the same packet id. */
  storeIncoming(packet: PersistencePacket, payload: PayloadHandle, bytes: number): void {
    const messageId = packet.messageId ?? 0;
    this.deleteIncoming(messageId);
    const entry = createEntry(this.nextSeq++, packet, payload, bytes, messageId, undefined);
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
    this.byCounter.clear();
    this.fallback.clear();
    this.queuedBytes = 0;
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

  // Removes a kept outgoing entry from the index that contains it.
  private unindex(entry: StoredEntry): void {
    if (entry.fallbackKey === undefined) this.byCounter.delete(entry.brokerCounter as number);
    else this.fallback.delete(entry.fallbackKey);
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
