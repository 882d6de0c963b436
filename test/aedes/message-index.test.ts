// How stored messages are named and found: by brokerCounter, distinguished
// by brokerId, with a fallback for counters shared by two brokers and for
// packets without a counter, and one copy per client when several of its
// subscriptions match.
import pino from 'pino';

import type { DropEvent, PersistencePacket } from '../../lib/aedes';
import {
  connectClient,
  delay,
  indexedPayload,
  manager,
  publishMany,
  startBroker,
  TestBroker,
  TestClient,
  TestClients,
  uniqueId,
  usageOf,
  waitFor,
} from './helpers';

const silent = pino({ level: 'silent' });
const SIZE = 1024;

let testBroker: TestBroker | undefined;
const clients = new TestClients();

async function connect(clientId: string, options: Parameters<typeof connectClient>[2] = {}): Promise<TestClient> {
  return clients.connect(testBroker!.url, clientId, options);
}

/** Leaves a persistent client subscribed and offline on the current broker. */
async function leaveOffline(clientId: string, topics: string[]): Promise<void> {
  await clients.leaveOffline(testBroker!, clientId, topics);
}

/** Builds a QoS 1 packet named as another broker of a cluster names it. */
function peerPacket(topic: string, brokerId: string | undefined, brokerCounter: number | undefined, index: number): PersistencePacket {
  return { cmd: 'publish', brokerId, brokerCounter, topic, payload: indexedPayload(index, SIZE), qos: 1, retain: false, dup: false };
}

/** Starts a broker whose acknowledged packets carry their payloads, which
 * tell the messages apart here: the wrapper copies a payload at PUBACK only
 * for the broker's 'ack' listeners. */
async function startAckedBroker(): Promise<TestBroker> {
  const started = await startBroker({ logger: silent, expiryInterval: 3600 });
  started.broker.on('ack', () => undefined);
  return started;
}

afterEach(async () => {
  await clients.endAll();
  await testBroker?.close();
  testBroker = undefined;
});

test('shared counter keeps two entries', async () => {
  testBroker = await startBroker({ logger: silent, expiryInterval: 3600 });
  const persistence = testBroker.persistence!;
  const subscriberId = uniqueId('same-counter');
  const topic = `same-counter/${subscriberId}`;
  await leaveOffline(subscriberId, [topic]);
  const sub = [{ clientId: subscriberId, topic, qos: 1 }];

  await persistence.outgoingEnqueueCombi(sub, peerPacket(topic, 'peer-a', 7, 0));
  // Same counter, another broker: a message of its own.
  await persistence.outgoingEnqueueCombi(sub, peerPacket(topic, 'peer-b', 7, 1));
  // Same broker and counter as the one before: the same message, not stored twice.
  await persistence.outgoingEnqueueCombi(sub, peerPacket(topic, 'peer-b', 7, 99));
  await persistence.outgoingEnqueueCombi(sub, peerPacket(topic, 'peer-a', 8, 2));
  const publisher = await connect(uniqueId('same-counter-pub'), { clean: true });
  await publisher.client.publishAsync(topic, indexedPayload(3, SIZE), { qos: 1 });

  expect(persistence.clientStats(subscriberId)).toMatchObject({ queuedMessages: 4, queuedBytes: 4 * SIZE, dropped: 0 });
  expect(usageOf(subscriberId)).toBe(4 * SIZE);

  // Each entry goes inflight and is released by its own PUBACK.
  const back = await connect(subscriberId, { clean: false });
  await waitFor(() => back.received.length >= 4, 'the stored messages');
  await waitFor(() => usageOf(subscriberId) === 0, 'the acks to release every message');
  await delay(100);
  expect(back.received).toEqual([0, 1, 2, 3]);
  expect(persistence.clientStats(subscriberId)).toMatchObject({ queuedMessages: 0, inflightMessages: 0 });
});

test('fallback entry outlives counter entry', async () => {
  testBroker = await startAckedBroker();
  const persistence = testBroker.persistence!;
  const subscriberId = uniqueId('counter-order');
  const topic = `counter-order/${subscriberId}`;
  await leaveOffline(subscriberId, [topic]);
  const client = { id: subscriberId };
  const sub = [{ clientId: subscriberId, topic, qos: 1 }];
  await persistence.outgoingEnqueueCombi(sub, peerPacket(topic, 'peer-a', 5, 0));
  await persistence.outgoingEnqueueCombi(sub, peerPacket(topic, 'peer-b', 5, 1));

  // The first is acknowledged, and the second, kept apart, is still found.
  await persistence.outgoingUpdate(client, { cmd: 'publish', brokerId: 'peer-a', brokerCounter: 5, messageId: 1 });
  const first = await persistence.outgoingClearMessageId(client, { cmd: 'puback', messageId: 1 });
  expect(first?.payload?.readUInt32BE(0)).toBe(0);
  await persistence.outgoingEnqueueCombi(sub, peerPacket(topic, 'peer-b', 5, 99));
  expect(persistence.clientStats(subscriberId)).toMatchObject({ queuedMessages: 1, inflightMessages: 0 });

  // A new message of the first broker takes the counter again.
  await persistence.outgoingEnqueueCombi(sub, peerPacket(topic, 'peer-a', 5, 2));
  expect(persistence.clientStats(subscriberId)).toMatchObject({ queuedMessages: 2, queuedBytes: 2 * SIZE });
  await persistence.outgoingUpdate(client, { cmd: 'publish', brokerId: 'peer-b', brokerCounter: 5, messageId: 2 });
  const second = await persistence.outgoingClearMessageId(client, { cmd: 'puback', messageId: 2 });
  expect(second).toMatchObject({ brokerId: 'peer-b', brokerCounter: 5 });
  expect(second?.payload?.readUInt32BE(0)).toBe(1);

  const back = await connect(subscriberId, { clean: false });
  await waitFor(() => back.received.length >= 1, 'the message left');
  await waitFor(() => usageOf(subscriberId) === 0, 'its ack');
  expect(back.received).toEqual([2]);
});

test('packet without counter matched by brokerId', async () => {
  testBroker = await startAckedBroker();
  const persistence = testBroker.persistence!;
  const subscriberId = uniqueId('no-counter');
  const topic = `no-counter/${subscriberId}`;
  await leaveOffline(subscriberId, [topic]);
  const client = { id: subscriberId };
  const sub = [{ clientId: subscriberId, topic, qos: 1 }];

  await persistence.outgoingEnqueue(sub[0], peerPacket(topic, 'peer', undefined, 0));
  await persistence.outgoingEnqueue(sub[0], peerPacket(topic, 'peer', undefined, 99));
  await persistence.outgoingEnqueueCombi(sub, peerPacket(topic, undefined, undefined, 1));
  expect(persistence.clientStats(subscriberId)).toMatchObject({ queuedMessages: 2, queuedBytes: 2 * SIZE });

  await persistence.outgoingUpdate(client, { cmd: 'publish', brokerId: 'peer', messageId: 1 });
  expect(persistence.clientStats(subscriberId)).toMatchObject({ queuedMessages: 1, inflightMessages: 1 });
  const first = await persistence.outgoingClearMessageId(client, { cmd: 'puback', messageId: 1 });
  expect(first).toMatchObject({ cmd: 'publish', brokerId: 'peer', brokerCounter: undefined, topic, qos: 1 });
  expect(first?.payload?.readUInt32BE(0)).toBe(0);

  // A missing brokerId and an empty one name the same broker.
  await persistence.outgoingUpdate(client, { cmd: 'publish', brokerId: '', messageId: 2 });
  const second = await persistence.outgoingClearMessageId(client, { cmd: 'puback', messageId: 2 });
  expect(second?.payload?.readUInt32BE(0)).toBe(1);
  expect(usageOf(subscriberId)).toBe(0);
  expect(persistence.clientStats(subscriberId)).toMatchObject({ queuedMessages: 0, inflightMessages: 0, dropped: 0 });
});

test('string counter matches its number', async () => {
  testBroker = await startAckedBroker();
  const persistence = testBroker.persistence!;
  const subscriberId = uniqueId('string-counter');
  const topic = `string-counter/${subscriberId}`;
  await leaveOffline(subscriberId, [topic]);
  const client = { id: subscriberId };
  const sub = { clientId: subscriberId, topic, qos: 1 };
  // Aedes sends number counters, but another caller may pass a string. It
  // is matched by its string form, as entryKey has always matched it.
  const named = (counter: unknown): number => counter as number;

  await persistence.outgoingEnqueue(sub, peerPacket(topic, 'peer', 9, 0));
  await persistence.outgoingEnqueue(sub, peerPacket(topic, 'peer', named('9'), 99));
  await persistence.outgoingEnqueue(sub, peerPacket(topic, 'peer', named('09'), 1));
  await persistence.outgoingEnqueue(sub, peerPacket(topic, 'peer', 9, 98));
  expect(persistence.clientStats(subscriberId)).toMatchObject({ queuedMessages: 2, queuedBytes: 2 * SIZE });

  await persistence.outgoingUpdate(client, { cmd: 'publish', brokerId: 'peer', brokerCounter: named('9'), messageId: 1 });
  await persistence.outgoingUpdate(client, { cmd: 'publish', brokerId: 'peer', brokerCounter: named('09'), messageId: 2 });
  const first = await persistence.outgoingClearMessageId(client, { cmd: 'puback', messageId: 1 });
  expect(first?.payload?.readUInt32BE(0)).toBe(0);
  const second = await persistence.outgoingClearMessageId(client, { cmd: 'puback', messageId: 2 });
  expect(second?.payload?.readUInt32BE(0)).toBe(1);
  expect(usageOf(subscriberId)).toBe(0);
});

test('overlapping subscriptions store one copy', async () => {
  testBroker = await startBroker({ logger: silent, expiryInterval: 3600 });
  const persistence = testBroker.persistence!;
  const first = uniqueId('overlap-a');
  const second = uniqueId('overlap-b');
  // Known to the inner persistence only, as after a restart: it has no store
  // until its first message.
  const unseen = uniqueId('overlap-unseen');
  const topics = [`overlap/${first}/+`, `overlap/${first}/#`];
  // Room for two: each message over it is one drop, however many of its
  // subscriptions matched.
  manager.setClientMemoryLimit(second, 2 * SIZE);
  await leaveOffline(first, topics);
  await leaveOffline(second, topics);
  await persistence.inner.addSubscriptions(
    { id: unseen },
    topics.map((topic) => ({ topic, qos: 1 })),
  );
  expect(persistence.clientStats(unseen)).toBeUndefined();

  const publisher = await connect(uniqueId('overlap-pub'), { clean: true });
  await publishMany(publisher.client, `overlap/${first}/x`, 5, SIZE, 1, 1);

  for (const id of [first, unseen]) {
    expect(persistence.clientStats(id)).toMatchObject({ queuedMessages: 5, queuedBytes: 5 * SIZE, dropped: 0 });
    expect(usageOf(id)).toBe(5 * SIZE);
  }
  expect(persistence.clientStats(second)).toMatchObject({ queuedMessages: 2, queuedBytes: 2 * SIZE, dropped: 3 });
  expect(persistence.stats().dropped).toBe(3);
  const back = await connect(first, { clean: false });
  await waitFor(() => back.received.length >= 5, 'the stored messages');
  await waitFor(() => usageOf(first) === 0, 'the acks');
  await delay(100);
  expect(back.received).toEqual([0, 1, 2, 3, 4]);
});

test('expired client matched twice drops once', async () => {
  testBroker = await startBroker({ logger: silent, expiryInterval: 1 });
  const persistence = testBroker.persistence!;
  const subscriberId = uniqueId('overlap-expired');
  const topics = [`overlap-expired/${subscriberId}/+`, `overlap-expired/${subscriberId}/#`];
  await leaveOffline(subscriberId, topics);
  const drops: DropEvent[] = [];
  persistence.on('drop', (event) => drops.push(event));

  await delay(1100);
  expect(manager.cleanupExpiredAllocators()).toBeGreaterThanOrEqual(1);
  // The first match ends the session and removes its store. The second
  // finds no store and must not count the message again.
  const topic = `overlap-expired/${subscriberId}/x`;
  const publisher = await connect(uniqueId('overlap-expired-pub'), { clean: true });
  await publisher.client.publishAsync(topic, indexedPayload(0, SIZE), { qos: 1 });

  expect(drops).toEqual([{ clientId: subscriberId, policy: 'drop-new', reason: 'session-expired', bytes: SIZE, topic }]);
  expect(persistence.stats()).toMatchObject({ expiredSessions: 1, dropped: 1 });
});
