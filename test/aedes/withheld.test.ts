// Messages that Aedes does not send to a subscriber's connection: refused by
// the broker's authorizeForward, the subscriber's own message under
// no-local, or a duplicate. The stored copy of a message that will never be
// sent is released, and a copy still owed to the client is kept.
import pino from 'pino';

import type { PersistencePacket, StoredPacket } from '../../lib/aedes';
import { indexedPayload, manager, publishMany, startBroker, TestBroker, TestClients, uniqueId, usageOf, waitFor } from './helpers';

const silent = pino({ level: 'silent' });

let testBroker: TestBroker | undefined;
const clients = new TestClients();

afterEach(async () => {
  await clients.endAll();
  await testBroker?.close();
  testBroker = undefined;
});

/** Resolves after the callbacks that setImmediate queued so far have run. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Refuses every message whose topic starts with 'secret/'. */
function refuseSecrets(broker: TestBroker): void {
  broker.broker.authorizeForward = (_client, packet) => (packet.topic.startsWith('secret/') ? null : packet);
}

function keptFor(clientId: string): { queued: number; inflight: number } {
  const stats = testBroker!.persistence!.clientStats(clientId);
  return { queued: stats?.queuedMessages ?? 0, inflight: stats?.inflightMessages ?? 0 };
}

/** Returns the stored packets of an offline client, in arrival order. */
async function storedPackets(clientId: string): Promise<StoredPacket[]> {
  const packets: StoredPacket[] = [];
  for await (const packet of testBroker!.persistence!.outgoingStream({ id: clientId })) packets.push(packet as StoredPacket);
  return packets;
}

/** Returns the packet Aedes passes when it does not send `stored`, which has no packet id. */
function unsent(stored: StoredPacket): PersistencePacket {
  return { cmd: 'publish', topic: stored.topic, qos: 1, brokerId: stored.brokerId, brokerCounter: stored.brokerCounter };
}

test('refused messages released while online', async () => {
  testBroker = await startBroker({ logger: silent, expiryInterval: 3600 });
  refuseSecrets(testBroker);
  const subscriberId = uniqueId('refused-online');
  const subscriber = await clients.connect(testBroker.url, subscriberId, { clean: false });
  await subscriber.client.subscribeAsync('#', { qos: 1 });
  const publisher = await clients.connect(testBroker.url, uniqueId('refused-online-pub'), { clean: true });

  await publishMany(publisher.client, 'secret/a', 50, 1024, 1);
  await publishMany(publisher.client, 'open/a', 5, 1024, 1);
  await waitFor(() => subscriber.received.length === 5, 'the five allowed messages');
  await waitFor(() => keptFor(subscriberId).queued + keptFor(subscriberId).inflight === 0, 'nothing kept');

  expect(subscriber.received).toEqual([0, 1, 2, 3, 4]);
  expect(usageOf(subscriberId)).toBe(0);
});

test.each(['disconnect', 'drop-new', 'drop-oldest'] as const)('refusals never drop under %s', async (policy) => {
  testBroker = await startBroker({ logger: silent, policy, expiryInterval: 3600 });
  refuseSecrets(testBroker);
  const subscriberId = uniqueId('refused-budget');
  const disconnects: string[] = [];
  testBroker.persistence!.on('disconnect', (event) => disconnects.push(event.clientId));
  let refusals = 0;
  const onRefusal = (event: { clientId?: string }): void => {
    if (event.clientId === subscriberId) refusals += 1;
  };
  manager.on('limitExceeded', onRefusal);
  const subscriber = await clients.connect(testBroker.url, subscriberId, { clean: false });
  await subscriber.client.subscribeAsync('#', { qos: 1 });
  const publisher = await clients.connect(testBroker.url, uniqueId('refused-budget-pub'), { clean: true });

  // 8 KiB fits eight of these payloads. Up to 100 publishes at a time make
  // Aedes store many refused messages within one turn of the event loop.
  manager.setClientMemoryLimit(subscriberId, 8 * 1024);
  await publishMany(publisher.client, 'secret/b', 400, 1024, 1, 100);
  await publishMany(publisher.client, 'open/b', 3, 1024, 1, 1);
  await waitFor(() => subscriber.received.length === 3, 'the three allowed messages');

  manager.off('limitExceeded', onRefusal);
  expect(disconnects).toEqual([]);
  expect(testBroker.persistence!.clientStats(subscriberId)!.dropped).toBe(0);
  // Withheld copies are released before the store would be refused.
  expect(refusals).toBe(0);
  expect(subscriber.received).toEqual([0, 1, 2]);
  expect(subscriber.client.connected).toBe(true);
});

test('refused at reconnect are released', async () => {
  testBroker = await startBroker({ logger: silent, expiryInterval: 3600 });
  const subscriberId = uniqueId('refused-reconnect');
  await clients.leaveOffline(testBroker, subscriberId, '#');
  const publisher = await clients.connect(testBroker.url, uniqueId('refused-reconnect-pub'), { clean: true });
  for (let i = 0; i < 4; i += 1) await publisher.client.publishAsync('secret/c', indexedPayload(100 + i, 512), { qos: 1 });
  for (let i = 0; i < 3; i += 1) await publisher.client.publishAsync('open/c', indexedPayload(i, 512), { qos: 1 });
  await waitFor(() => keptFor(subscriberId).queued === 7, 'seven queued messages');

  // Aedes calls authorizeForward again as it resends stored messages.
  refuseSecrets(testBroker);
  const back = await clients.connect(testBroker.url, subscriberId, { clean: false });
  await waitFor(() => back.received.length === 3, 'the three allowed messages');
  await waitFor(() => keptFor(subscriberId).queued + keptFor(subscriberId).inflight === 0, 'nothing kept');

  expect(back.received).toEqual([0, 1, 2]);
  expect(usageOf(subscriberId)).toBe(0);
  expect(testBroker.persistence!.clientStats(subscriberId)!.dropped).toBe(0);
});

test('overlapping subscriptions deliver each message once', async () => {
  testBroker = await startBroker({ logger: silent, expiryInterval: 3600 });
  const subscriberId = uniqueId('overlap');
  const subscriber = await clients.connect(testBroker.url, subscriberId, { clean: false });
  await subscriber.client.subscribeAsync(['overlap/#', 'overlap/+'], { qos: 1 });
  const publisher = await clients.connect(testBroker.url, uniqueId('overlap-pub'), { clean: true });

  // Aedes skips each message's second send as a duplicate. A tight budget
  // makes stores release the copies withheld by those skips at once.
  manager.setClientMemoryLimit(subscriberId, 8 * 1024);
  await publishMany(publisher.client, 'overlap/a', 200, 1024, 1, 100);
  await waitFor(() => subscriber.received.length >= 200, '200 messages');
  await waitFor(() => keptFor(subscriberId).queued + keptFor(subscriberId).inflight === 0, 'nothing kept');

  expect(subscriber.received).toEqual(Array.from({ length: 200 }, (_, i) => i));
  expect(usageOf(subscriberId)).toBe(0);
});

describe('clear calls without a packet id', () => {
  let subscriberId: string;
  let stored: StoredPacket[];

  beforeEach(async () => {
    testBroker = await startBroker({ logger: silent, expiryInterval: 3600 });
    subscriberId = uniqueId('unsent');
    await clients.leaveOffline(testBroker, subscriberId, 'unsent/#');
    const publisher = await clients.connect(testBroker.url, uniqueId('unsent-pub'), { clean: true });
    await publishMany(publisher.client, 'unsent/a', 2, 256, 1, 1);
    await waitFor(() => keptFor(subscriberId).queued === 2, 'two queued messages');
    stored = await storedPackets(subscriberId);
  });

  test('refused message released next turn', async () => {
    const [, newest] = stored;
    // Aedes' duplicate check recorded this counter, then authorizeForward refused it.
    const client = { id: subscriberId, duplicates: { [newest.brokerId!]: newest.brokerCounter! } };
    await testBroker!.persistence!.outgoingClearMessageId(client, unsent(newest));
    expect(keptFor(subscriberId).queued).toBe(2);

    await nextTurn();
    expect(keptFor(subscriberId).queued).toBe(1);
    expect((await storedPackets(subscriberId)).map((p) => p.brokerCounter)).toEqual([stored[0].brokerCounter]);
  });

  test('older duplicate keeps its copy', async () => {
    const [oldest, newest] = stored;
    // The connection was sent a newer message first, so Aedes skipped this one.
    const client = { id: subscriberId, duplicates: { [newest.brokerId!]: newest.brokerCounter! } };
    await testBroker!.persistence!.outgoingClearMessageId(client, unsent(oldest));
    await nextTurn();

    expect(keptFor(subscriberId).queued).toBe(2);
  });

  test('second send keeps the copy', async () => {
    const [oldest] = stored;
    const client = { id: subscriberId, duplicates: { [oldest.brokerId!]: oldest.brokerCounter! } };
    await testBroker!.persistence!.outgoingClearMessageId(client, unsent(oldest));
    // The first send gives the message a packet id before the release runs.
    await testBroker!.persistence!.outgoingUpdate(client, { ...unsent(oldest), messageId: 7 });
    await nextTurn();

    expect(keptFor(subscriberId)).toEqual({ queued: 1, inflight: 1 });
  });

  test('own message under no-local released', async () => {
    const [oldest] = stored;
    const client = { id: subscriberId, duplicates: {} };
    const own = { ...unsent(oldest), clientId: subscriberId, nl: true };
    await testBroker!.persistence!.outgoingClearMessageId(client, own);
    await nextTurn();

    expect(keptFor(subscriberId).queued).toBe(1);
  });

  test('client without duplicate record keeps copies', async () => {
    await testBroker!.persistence!.outgoingClearMessageId({ id: subscriberId }, unsent(stored[1]));
    await nextTurn();

    expect(keptFor(subscriberId).queued).toBe(2);
  });
});
