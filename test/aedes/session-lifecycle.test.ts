// The session lifecycle through a real broker: QoS 2 in both directions,
// clean starts, expiry, the 'disconnect' policy, per-subscriber copies,
// rate-limited logging and release on close.
import { Writable } from 'node:stream';

import pino from 'pino';

import type { DropEvent, ExpiredEvent, PersistencePacket } from '../../lib/aedes';
import {
  connectClient,
  delay,
  indexedPayload,
  manager,
  publishMany,
  sessions,
  startBroker,
  TestBroker,
  TestClient,
  TestClients,
  uniqueId,
  usageOf,
  waitFor,
} from './helpers';

const silent = pino({ level: 'silent' });

let testBroker: TestBroker | undefined;
const clients = new TestClients();

async function connect(clientId: string, options: Parameters<typeof connectClient>[2] = {}): Promise<TestClient> {
  return clients.connect(testBroker!.url, clientId, options);
}

/** Leaves a persistent client subscribed and offline on the current broker. */
async function leaveOffline(clientId: string, topic: string, qos: 1 | 2 = 1): Promise<void> {
  await clients.leaveOffline(testBroker!, clientId, topic, qos);
}

afterEach(async () => {
  await clients.endAll();
  await testBroker?.close();
  testBroker = undefined;
});

test('offline queue kept with no expiry configured', async () => {
  // The manager's default expiry of 0 would end a session at disconnect;
  // the wrapper keeps persistent sessions instead, as MQTT 3.1.1 does.
  const saved = manager.getDefaultSessionExpiry();
  manager.setDefaultSessionExpiry(0);
  try {
    testBroker = await startBroker({ logger: silent });
    const subscriberId = uniqueId('default-expiry');
    await leaveOffline(subscriberId, 'default/expiry');

    expect(sessions.hasSession(subscriberId)).toBe(true);
    const publisher = await connect(uniqueId('default-expiry-pub'), { clean: true });
    await publishMany(publisher.client, 'default/expiry', 3, 100, 1);
    await waitFor(() => testBroker!.persistence!.clientStats(subscriberId)?.queuedMessages === 3, 'three queued messages');
    expect(manager.cleanupExpiredAllocators()).toBe(0);
    expect(usageOf(subscriberId)).toBeGreaterThanOrEqual(300);

    const back = await connect(subscriberId, { clean: false });
    const received: string[] = [];
    back.client.on('message', (_topic, payload) => received.push(payload.toString('hex')));
    await waitFor(() => received.length === 3, 'the three queued messages');
  } finally {
    manager.setDefaultSessionExpiry(saved);
  }
});

test('inbound QoS 2 released at PUBREL', async () => {
  testBroker = await startBroker({ logger: silent });
  const publisherId = uniqueId('qos2-pub');
  const publisher = await connect(publisherId, { clean: true });
  const baseline = usageOf(publisherId);

  let during: { usage: number; incoming: number } | undefined;
  testBroker.broker.on('publish', (_packet, client) => {
    if (client?.id === publisherId) {
      during = { usage: usageOf(publisherId), incoming: testBroker!.persistence!.clientStats(publisherId)!.incomingMessages };
    }
  });
  await publisher.client.publishAsync('qos2/in', indexedPayload(7, 2000), { qos: 2 });

  expect(during).toBeDefined();
  expect(during!.incoming).toBe(1);
  expect(during!.usage).toBeGreaterThanOrEqual(baseline + 2000);
  // publishAsync resolved on PUBCOMP, which follows the PUBREL that released it.
  expect(usageOf(publisherId)).toBe(baseline);
  expect(testBroker.persistence!.clientStats(publisherId)).toMatchObject({ incomingMessages: 0, incomingBytes: 0 });
});

test('inbound QoS 2 over budget closes publisher', async () => {
  testBroker = await startBroker({ logger: silent });
  const publisherId = uniqueId('qos2-big');
  manager.setClientMemoryLimit(publisherId, 1024);
  const drops: DropEvent[] = [];
  testBroker.persistence!.on('drop', (event) => drops.push(event));
  const disconnects: string[] = [];
  testBroker.persistence!.on('disconnect', (event) => disconnects.push(event.clientId));
  const publisher = await connect(publisherId, { clean: true });
  const closed = new Promise<void>((resolve) => publisher.client.once('close', () => resolve()));

  publisher.client.publish('qos2/in', indexedPayload(1, 4096), { qos: 2 });
  await closed;

  expect(drops).toEqual([
    { clientId: publisherId, policy: 'disconnect', reason: 'inbound-limit-exceeded', bytes: 4096, topic: 'qos2/in' },
  ]);
  // Aedes closes the publisher, and the close is counted like any disconnect.
  expect(disconnects).toEqual([publisherId]);
  expect(testBroker.persistence!.stats().disconnected).toBe(1);
  await waitFor(() => usageOf(publisherId) === 0, 'the publisher usage to return to 0');
});

test('outgoing QoS 2 released by PUBCOMP', async () => {
  testBroker = await startBroker({ logger: silent, expiryInterval: 3600 });
  const subscriberId = uniqueId('qos2-sub');
  const topic = `qos2/out/${subscriberId}`;
  await leaveOffline(subscriberId, topic, 2);

  const publisher = await connect(uniqueId('qos2-out-pub'), { clean: true });
  await publishMany(publisher.client, topic, 10, 1024, 2);
  expect(testBroker.persistence!.clientStats(subscriberId)).toMatchObject({ queuedMessages: 10, queuedBytes: 10 * 1024 });
  expect(usageOf(subscriberId)).toBe(10 * 1024);

  const back = await connect(subscriberId, { clean: false });
  await waitFor(() => back.received.length >= 10, 'the queued messages');
  await waitFor(() => testBroker!.persistence!.clientStats(subscriberId)!.inflightMessages === 0, 'PUBCOMP for every message');
  expect(back.received).toEqual(Array.from({ length: 10 }, (_, i) => i));
  expect(usageOf(subscriberId)).toBe(0);
});

test('clean reconnect releases the session', async () => {
  testBroker = await startBroker({ logger: silent, expiryInterval: 3600 });
  const subscriberId = uniqueId('clean');
  const topic = `clean/${subscriberId}`;
  await leaveOffline(subscriberId, topic);

  const publisher = await connect(uniqueId('clean-pub'), { clean: true });
  await publishMany(publisher.client, topic, 20, 1024, 1);
  expect(usageOf(subscriberId)).toBe(20 * 1024);

  const back = await connect(subscriberId, { clean: true });
  expect(back.sessionPresent).toBe(false);
  expect(usageOf(subscriberId)).toBe(0);
  await delay(200);
  expect(back.received).toEqual([]);
  expect(testBroker.persistence!.clientStats(subscriberId)).toMatchObject({ queuedMessages: 0, inflightMessages: 0 });

  // The clean session ends with its connection: nothing is kept for it.
  await back.client.endAsync();
  await waitFor(() => testBroker!.persistence!.clientStats(subscriberId) === undefined, 'the clean session to end');
});

test('session expiry releases stored messages', async () => {
  testBroker = await startBroker({ logger: silent, expiryInterval: 1, expiryCheckInterval: 1 });
  const persistence = testBroker.persistence!;
  const subscriberId = uniqueId('expiry');
  const topic = `expiry/${subscriberId}`;
  const baselineGlobal = manager.getGlobalMemoryUsage();
  const baselineBuffers = sessions.getMemoryStatistics().liveBuffers;
  await leaveOffline(subscriberId, topic);

  const publisher = await connect(uniqueId('expiry-pub'), { clean: true });
  await publishMany(publisher.client, topic, 20, 1024, 1);
  expect(usageOf(subscriberId)).toBe(20 * 1024);
  expect(manager.getGlobalMemoryUsage()).toBe(baselineGlobal + 20 * 1024);

  const expired = new Promise<ExpiredEvent>((resolve) => persistence.once('expired', resolve));
  await delay(1100);
  expect(manager.cleanupExpiredAllocators()).toBeGreaterThanOrEqual(1);
  // The allocators are gone but the buffers were still charged until the
  // periodic check released them.
  expect(await expired).toEqual({ clientId: subscriberId, messages: 20, bytes: 20 * 1024 });
  expect(manager.getGlobalMemoryUsage()).toBe(baselineGlobal);
  expect(sessions.getMemoryStatistics().liveBuffers).toBe(baselineBuffers);
  expect(persistence.stats().expiredSessions).toBe(1);

  // The session ended: no subscription, no message comes back.
  await waitFor(() => persistence.clientStats(subscriberId) === undefined, 'the session to be forgotten');
  const back = await connect(subscriberId, { clean: false });
  expect(back.sessionPresent).toBe(false);
  await publisher.client.publishAsync(topic, indexedPayload(99, 16), { qos: 1 });
  await delay(200);
  expect(back.received).toEqual([]);
});

test("'disconnect' closes a stuck subscriber", async () => {
  testBroker = await startBroker({ logger: silent, policy: 'disconnect', expiryInterval: 3600 });
  const persistence = testBroker.persistence!;
  const stuckId = uniqueId('stuck');
  const topic = `stuck/${stuckId}`;
  manager.setClientMemoryLimit(stuckId, 8 * 1024);
  const disconnects: string[] = [];
  persistence.on('disconnect', (event) => disconnects.push(event.clientId));

  // A persistent subscriber that receives but never acknowledges.
  const stuck = await connect(stuckId, { clean: false, customHandleAcks: () => undefined });
  await stuck.client.subscribeAsync(topic, { qos: 1 });
  const stuckClosed = new Promise<void>((resolve) => stuck.client.once('close', () => resolve()));
  const online = await connect(uniqueId('stuck-online'), { clean: true });
  await online.client.subscribeAsync(topic, { qos: 1 });
  const publisher = await connect(uniqueId('stuck-pub'), { clean: true });
  let publisherCloses = 0;
  publisher.client.on('close', () => {
    publisherCloses += 1;
  });

  await publishMany(publisher.client, topic, 200, 1024, 1);
  await stuckClosed;
  await waitFor(() => online.received.length >= 200, 'the online subscriber to get every message');

  expect(disconnects).toEqual([stuckId]);
  expect(publisherCloses).toBe(0);
  expect(publisher.client.connected).toBe(true);
  const stats = persistence.clientStats(stuckId)!;
  expect(stats.disconnected).toBe(1);
  expect(stats.dropped).toBeGreaterThan(0);
  expect(stats.inflightMessages + stats.queuedMessages + stats.dropped).toBe(200);
  expect(usageOf(stuckId)).toBeLessThanOrEqual(8 * 1024);
});

test('fan-out charges each subscriber its copy', async () => {
  testBroker = await startBroker({ logger: silent, expiryInterval: 3600 });
  const first = uniqueId('fan-a');
  const second = uniqueId('fan-b');
  const topic = `fan/${first}`;
  manager.setClientMemoryLimit(second, 4 * 1024);
  await leaveOffline(first, topic);
  await leaveOffline(second, topic);

  const publisher = await connect(uniqueId('fan-pub'), { clean: true });
  await publishMany(publisher.client, topic, 10, 1024, 1);

  // The first has no limit and keeps all ten. The second's own 4 KiB bound
  // keeps four, whatever the first keeps.
  expect(usageOf(first)).toBe(10 * 1024);
  expect(usageOf(second)).toBe(4 * 1024);
  expect(testBroker.persistence!.stats()).toMatchObject({ queuedMessages: 14, queuedBytes: 14 * 1024, dropped: 6 });
});

test('clientPolicies overrides the policy', async () => {
  const oldestId = uniqueId('per-client-oldest');
  testBroker = await startBroker({
    logger: silent,
    expiryInterval: 3600,
    clientPolicies: (clientId) => (clientId === oldestId ? 'drop-oldest' : undefined),
  });
  const newestId = uniqueId('per-client-new');
  const topic = `per-client/${oldestId}`;
  for (const id of [oldestId, newestId]) {
    manager.setClientMemoryLimit(id, 2 * 1024);
    await leaveOffline(id, topic);
  }
  const publisher = await connect(uniqueId('per-client-pub'), { clean: true });
  await publishMany(publisher.client, topic, 5, 1024, 1, 1);

  const oldest = await connect(oldestId, { clean: false });
  const newest = await connect(newestId, { clean: false });
  await waitFor(() => oldest.received.length >= 2 && newest.received.length >= 2, 'the kept messages');
  expect(oldest.received).toEqual([3, 4]);
  expect(newest.received).toEqual([0, 1]);
});

test('drops logged once per interval', async () => {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      callback();
    },
  });
  testBroker = await startBroker({ logger: pino({ level: 'warn' }, sink), logIntervalMs: 300, expiryInterval: 3600 });
  const subscriberId = uniqueId('logged');
  const topic = `logged/${subscriberId}`;
  manager.setClientMemoryLimit(subscriberId, 2 * 1024);
  await leaveOffline(subscriberId, topic);
  const publisher = await connect(uniqueId('logged-pub'), { clean: true });
  await publishMany(publisher.client, topic, 50, 1024, 1);
  await waitFor(() => lines.length > 0, 'the summary line', 2000);
  await delay(100);

  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatchObject({
    msg: 'session messages dropped by memory limits',
    dropped: 48,
    clients: [{ clientId: subscriberId, policy: 'drop-new', dropped: 48, reasons: { 'limit-exceeded': 48 } }],
  });
});

test('broker close releases everything', async () => {
  testBroker = await startBroker({ logger: silent, expiryInterval: 3600 });
  const baselineBuffers = sessions.getMemoryStatistics().liveBuffers;
  const subscriberId = uniqueId('closing');
  const topic = `closing/${subscriberId}`;
  await leaveOffline(subscriberId, topic);
  const publisher = await connect(uniqueId('closing-pub'), { clean: true });
  await publishMany(publisher.client, topic, 30, 1024, 1);
  expect(usageOf(subscriberId)).toBe(30 * 1024);

  await clients.endAll();
  await testBroker.close();
  testBroker = undefined;
  expect(usageOf(subscriberId)).toBe(0);
  expect(sessions.getMemoryStatistics().liveBuffers).toBe(baselineBuffers);
});

test('ack event carries the payload', async () => {
  testBroker = await startBroker({ logger: silent, expiryInterval: 3600 });
  const subscriberId = uniqueId('acked');
  const topic = `acked/${subscriberId}`;
  const acked: Array<{ clientId: string | undefined; payload: Buffer }> = [];
  const subscriber = await connect(subscriberId, { clean: false });
  await subscriber.client.subscribeAsync(topic, { qos: 1 });
  const publisher = await connect(uniqueId('acked-pub'), { clean: true });

  // Without a listener the stored copy is released all the same.
  await publishMany(publisher.client, topic, 2, 512, 1);
  await waitFor(() => subscriber.received.length >= 2 && usageOf(subscriberId) === 0, 'the first acks');

  testBroker.broker.on('ack', (packet, client) => {
    if (packet !== undefined && 'payload' in packet) acked.push({ clientId: client?.id, payload: Buffer.from(packet.payload) });
  });
  await publishMany(publisher.client, topic, 3, 512, 1);
  await waitFor(() => acked.length >= 3, 'the ack events');

  expect(acked.map((entry) => entry.clientId)).toEqual([subscriberId, subscriberId, subscriberId]);
  expect(acked.map((entry) => entry.payload.length)).toEqual([512, 512, 512]);
  expect(acked.map((entry) => entry.payload.readUInt32BE(0))).toEqual([0, 1, 2]);
  expect(usageOf(subscriberId)).toBe(0);
});
test('ack without listener frees without copy', async () => {
  testBroker = await startBroker({ logger: silent, expiryInterval: 3600 });
  const persistence = testBroker.persistence!;
  const subscriberId = uniqueId('no-ack-listener');
  const topic = `no-ack-listener/${subscriberId}`;
  await leaveOffline(subscriberId, topic);
  const client = { id: subscriberId };
  const packet = (brokerCounter: number, index: number): PersistencePacket => ({
    cmd: 'publish', brokerId: 'peer', brokerCounter, topic, payload: indexedPayload(index, 512), qos: 1, retain: false, dup: false,
  });
  await persistence.outgoingEnqueue({ clientId: subscriberId, topic, qos: 1 }, packet(1, 0));
  await persistence.outgoingEnqueue({ clientId: subscriberId, topic, qos: 1 }, packet(2, 1));
  await persistence.outgoingUpdate(client, { cmd: 'publish', brokerId: 'peer', brokerCounter: 1, messageId: 1 });
  await persistence.outgoingUpdate(client, { cmd: 'publish', brokerId: 'peer', brokerCounter: 2, messageId: 2 });

  // Aedes hands the packet only to 'ack' listeners, and there are none.
  const withoutListener = await persistence.outgoingClearMessageId(client, { cmd: 'puback', messageId: 1 });
  expect(withoutListener).toMatchObject({ cmd: 'publish', brokerId: 'peer', brokerCounter: 1, messageId: 1 });
  expect(withoutListener?.payload).toBeUndefined();
  expect(usageOf(subscriberId)).toBe(512);

  testBroker.broker.on('ack', () => undefined);
  const withListener = await persistence.outgoingClearMessageId(client, { cmd: 'puback', messageId: 2 });
  expect(withListener?.payload?.readUInt32BE(0)).toBe(1);
  expect(withListener?.payload?.length).toBe(512);
  expect(usageOf(subscriberId)).toBe(0);
});

