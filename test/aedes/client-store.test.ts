// ClientStore against a model that finds every message by walking one list.
// Random enqueues, duplicates, sends, resends, acknowledgements, PUBRECs,
// evictions and releases of withheld messages, with the bytes charged for
// queued messages, run on stores small enough to walk their lists and large enough
// to build their index, with packet ids that are reused.
import { ClientStore, PayloadAccess, StoredEntry } from '../../lib/aedes/client-store';
import type { PersistencePacket } from '../../lib/aedes';
import { indexedPayload, manager, sessions, uniqueId, usageOf } from './helpers';

const SIZE = 16;

interface ModelEntry {
  seq: number;
  brokerId: string | undefined;
  brokerCounter: unknown;
  messageId: number | undefined;
  inflight: boolean;
  received: boolean;
  withheld: boolean;
}

/** Two messages are the same when both keys have the same string forms. */
function sameName(entry: ModelEntry, brokerId: string | undefined, brokerCounter: unknown): boolean {
  return `${entry.brokerId ?? ''}` === `${brokerId ?? ''}` && `${entry.brokerCounter ?? ''}` === `${brokerCounter ?? ''}`;
}

/** The reference: one array in arrival order, searched from the front. */
class Model {
  entries: ModelEntry[] = [];
  private seq = 0;

  named(brokerId: string | undefined, brokerCounter: unknown): ModelEntry | undefined {
    return this.entries.find((entry) => sameName(entry, brokerId, brokerCounter));
  }

  enqueue(brokerId: string | undefined, brokerCounter: unknown): boolean {
    if (this.named(brokerId, brokerCounter) !== undefined) return false;
    this.entries.push({ seq: this.seq++, brokerId, brokerCounter, messageId: undefined, inflight: false, received: false, withheld: false });
    return true;
  }

  markInflight(brokerId: string | undefined, brokerCounter: unknown, messageId: number): boolean {
    const entry = this.named(brokerId, brokerCounter);
    if (entry === undefined) return false;
    // The entry that got a packet id last is the one it names.
    for (const other of this.entries) if (other !== entry && other.messageId === messageId) other.messageId = undefined;
    entry.messageId = messageId;
    entry.inflight = true;
    return true;
  }

  withhold(brokerId: string | undefined, brokerCounter: unknown): ModelEntry | undefined {
    const entry = this.named(brokerId, brokerCounter);
    if (entry === undefined || entry.inflight) return undefined;
    entry.withheld = true;
    return entry;
  }

  releaseWithheld(entry: ModelEntry): boolean {
    const index = this.entries.indexOf(entry);
    const released = index >= 0 && entry.withheld && !entry.inflight;
    if (released) this.entries.splice(index, 1);
    entry.withheld = false;
    return released;
  }

  releaseAllWithheld(): number {
    const remaining = this.entries.filter((entry) => !entry.withheld || entry.inflight);
    const released = this.entries.length - remaining.length;
    this.entries = remaining;
    return released;
  }

  acknowledge(messageId: number): ModelEntry | undefined {
    const index = this.entries.findIndex((entry) => entry.inflight && entry.messageId === messageId);
    if (index < 0) return undefined;
    return this.entries.splice(index, 1)[0];
  }

  markReceived(messageId: number): boolean {
    const entry = this.entries.find((candidate) => candidate.inflight && candidate.messageId === messageId);
    if (entry === undefined) return false;
    entry.received = true;
    return true;
  }

  evictOldest(): ModelEntry | undefined {
    const index = this.entries.findIndex((entry) => !entry.inflight);
    if (index < 0) return undefined;
    return this.entries.splice(index, 1)[0];
  }

  get queued(): number {
    return this.entries.filter((entry) => !entry.inflight).length;
  }

  get inflight(): number {
    return this.entries.filter((entry) => entry.inflight).length;
  }

  get bytes(): number {
    return this.entries.filter((entry) => !entry.received).length * SIZE;
  }
}

function payloadAccess(): PayloadAccess {
  return {
    load: (handle, size) => sessions.loadPayload(handle, size),
    take: (handle, size) => sessions.takePayload(handle, size),
    free: (handle) => sessions.freePayload(handle),
  };
}

/** A deterministic generator, so that a failure can be replayed. */
function generator(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
}

/**
 * Runs `steps` random operations on a store and the model, keeping about
 * as many messages as `targets` gives (each for 1,000 steps in turn), and
 * returns the number of steps where they disagreed.
 * Counters mostly count up from one broker, as Aedes sends them, with some
 * from a second broker, some repeated, and some given as strings.
 */
function compare(targets: number[], steps: number, seed: number): number {
  const random = generator(seed);
  const clientId = uniqueId('store-model');
  sessions.registerSession(clientId, { expiryInterval: 3600 });
  manager.setClientMemoryLimit(clientId, 64 * 1024 * 1024);
  const store = new ClientStore(clientId, payloadAccess());
  const model = new Model();
  // Every payload has SIZE bytes, so the backend charges each the same.
  const probe = sessions.storePayload(clientId, Buffer.alloc(SIZE), 'queue') as number;
  const charge = sessions.storedPayloadCharge();
  sessions.freePayload(probe);
  let counter = 0;
  let nextId = 1;
  let mismatches = 0;
  // Messages withheld from a send, as the model and the store name them.
  let withheld: { model: ModelEntry; stored: StoredEntry }[] = [];
  const check = (ok: boolean): void => {
    if (!ok) mismatches += 1;
  };

  for (let step = 0; step < steps; step += 1) {
    const target = targets[Math.floor(step / 1000) % targets.length];
    const roll = random();
    const stored = model.entries.length;
    // More new messages below the target than above it.
    const grow = stored < target ? 0.5 : 0.2;
    if (roll < grow) {
      // A new message, or now and then a repeat of a stored one.
      let brokerId: string | undefined = random() < 0.15 ? 'peer' : 'home';
      let brokerCounter: unknown = ++counter;
      if (stored > 0 && random() < 0.1) {
        const repeated = model.entries[Math.floor(random() * stored)];
        brokerId = repeated.brokerId;
        brokerCounter = random() < 0.5 ? `${repeated.brokerCounter}` : repeated.brokerCounter;
      } else if (random() < 0.05) {
        brokerCounter = `${brokerCounter}`;
      }
      const packet: PersistencePacket = {
        cmd: 'publish', brokerId, brokerCounter: brokerCounter as number, topic: 't', payload: indexedPayload(step, SIZE), qos: 1,
      };
      const fresh = model.enqueue(brokerId, brokerCounter);
      check(store.holdsMessage(brokerId, brokerCounter as number) === !fresh);
      if (fresh) {
        const handle = sessions.storePayload(clientId, packet.payload as Buffer, 'queue');
        if (handle === undefined) throw new Error('the test limit is too low');
        store.enqueue(packet, handle, SIZE, sessions.storedPayloadCharge());
      }
    } else if (roll < grow + (1 - grow) * 0.4 && stored > 0) {
      // Aedes sends the oldest queued message, or resends any stored one, with
      // packet ids counting up and wrapping at 300 so that some are reused.
      let entry = model.entries.find((candidate) => !candidate.inflight) ?? model.entries[0];
      if (random() >= 0.8) entry = model.entries[Math.floor(random() * stored)];
      const messageId = random() < 0.2 && entry.messageId !== undefined ? entry.messageId : nextId;
      nextId = (nextId % 300) + 1;
      check(store.markInflight(entry.brokerId, entry.brokerCounter as number, messageId) === model.markInflight(entry.brokerId, entry.brokerCounter, messageId));
    } else if (roll < grow + (1 - grow) * 0.9) {
      // Acknowledgements come mostly for the oldest inflight message.
      const sent = model.entries.filter((candidate) => candidate.inflight && candidate.messageId !== undefined);
      let messageId: number;
      if (sent.length === 0 || random() < 0.1) {
        // Now and then a packet id that may name no message.
        messageId = Math.floor(random() * 300) + 1;
      } else if (random() < 0.7) {
        messageId = sent[0].messageId as number;
      } else {
        messageId = sent[Math.floor(random() * sent.length)].messageId as number;
      }
      if (random() < 0.1) {
        check(store.markReceived(messageId) === model.markReceived(messageId));
      } else {
        const expected = model.acknowledge(messageId);
        const packet = store.acknowledge(messageId, true);
        check((packet === undefined) === (expected === undefined));
        // A message past PUBREC comes back as its PUBREL, without names.
        if (expected !== undefined && packet !== undefined) {
          check(packet.messageId === messageId);
          check(packet.cmd === (expected.received ? 'pubrel' : 'publish'));
          if (!expected.received) check(packet.brokerCounter === expected.brokerCounter && packet.brokerId === expected.brokerId);
        }
      }
    } else if (random() < 0.5) {
      const expected = model.evictOldest();
      const evicted = store.evictOldest();
      check(evicted?.brokerCounter === expected?.brokerCounter && evicted?.brokerId === expected?.brokerId);
    } else if (random() < 0.5) {
      // Aedes did not send a stored message, queued or inflight, or one never stored.
      const entry = stored > 0 && random() < 0.9 ? model.entries[Math.floor(random() * stored)] : undefined;
      const brokerId = entry?.brokerId ?? 'home';
      const brokerCounter = entry?.brokerCounter ?? counter + 1;
      const expected = model.withhold(brokerId, brokerCounter);
      const marked = store.withhold(brokerId, brokerCounter as number);
      check((marked === undefined) === (expected === undefined));
      if (expected !== undefined && marked !== undefined) withheld.push({ model: expected, stored: marked });
    } else if (random() < 0.7 && withheld.length > 0) {
      // One turn later, one withheld message is released unless it was sent.
      const [pair] = withheld.splice(Math.floor(random() * withheld.length), 1);
      check(store.releaseWithheld(pair.stored) === model.releaseWithheld(pair.model));
    } else {
      check(store.releaseAllWithheld() === model.releaseAllWithheld());
      withheld = [];
    }

    const stats = store.stats();
    check(stats.queuedMessages === model.queued && stats.inflightMessages === model.inflight);
    check(store.queuedCharged === model.queued * charge);
    check(stats.queuedBytes + stats.inflightBytes === model.bytes && usageOf(clientId) === model.bytes);
    if (step % 50 === 0) {
      const order = store.outgoingSnapshot().map((entry) => `${entry.brokerId}/${entry.brokerCounter}`);
      check(order.join(',') === model.entries.map((entry) => `${entry.brokerId}/${entry.brokerCounter}`).join(','));
    }
  }

  store.clear();
  check(usageOf(clientId) === 0);
  sessions.unregisterSession(clientId);
  return mismatches;
}

describe('ClientStore', () => {
  test('matches the model while it walks its lists', () => {
    expect(compare([8], 20_000, 11)).toBe(0);
  });

  test('matches the model while it keeps an index', () => {
    expect(compare([400], 20_000, 23)).toBe(0);
  });

  test('matches the model as it builds and drops its index', () => {
    expect(compare([16, 120], 20_000, 37)).toBe(0);
  });
});
