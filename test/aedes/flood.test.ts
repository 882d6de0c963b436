// A flood of 5,000 QoS 1 messages of 1 KiB while a persistent subscriber is
// offline. Its session stays within its 64 KiB limit, and an online subscriber
// gets every message. The publisher is never disconnected. On reconnect the
// offline subscriber gets the messages its budget kept, in order.
import {
  connectClient,
  delay,
  endClient,
  manager,
  publishMany,
  sessions,
  settleGarbage,
  startBroker,
  TestBroker,
  TestClient,
  uniqueId,
  usageOf,
  waitFor,
} from './helpers';

const LIMIT = 64 * 1024;
const COUNT = 5000;
const SIZE = 1024;

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

interface FloodResult {
  /** Growth measured after a collection, in bytes. */
  rssGrowth: number;
  arrayBufferGrowth: number;
  /** Growth of the bytes tcmalloc reports allocated, or undefined where
   * that count covers more than this package's blocks. */
  backendGrowth: number | undefined;
  online: number[];
  publisherCloses: number;
}

/** Returns the bytes tcmalloc reports allocated, or undefined with another
 * backend, or with a tcmalloc preloaded as the process's malloc, which then
 * counts every allocation of the process too. */
function backendAllocated(): number | undefined {
  const info = manager.getBackendInfo();
  return info.source === 'preloaded' ? undefined : info.heap?.currentAllocatedBytes;
}

/** Publishes the flood on `url` while `offlineId` is away and `onlineId` listens. */
async function flood(url: string, topic: string, onlineId: string, publisherId: string): Promise<FloodResult> {
  const clients: TestClient[] = [];
  try {
    const online = await connectClient(url, onlineId, { clean: true });
    clients.push(online);
    await online.client.subscribeAsync(topic, { qos: 1 });
    const publisher = await connectClient(url, publisherId, { clean: true });
    clients.push(publisher);
    let publisherCloses = 0;
    publisher.client.on('close', () => {
      publisherCloses += 1;
    });

    await settleGarbage();
    const before = process.memoryUsage();
    const backendBefore = backendAllocated();
    await publishMany(publisher.client, topic, COUNT, SIZE, 1);
    await waitFor(() => online.received.length >= COUNT, 'the online subscriber to get every message');
    await settleGarbage();
    const after = process.memoryUsage();
    const backendAfter = backendAllocated();
    return {
      rssGrowth: after.rss - before.rss,
      arrayBufferGrowth: after.arrayBuffers - before.arrayBuffers,
      backendGrowth: backendBefore === undefined || backendAfter === undefined ? undefined : backendAfter - backendBefore,
      online: online.received,
      publisherCloses,
    };
  } finally {
    for (const { client } of clients) await endClient(client);
  }
}

async function subscribeAndLeave(url: string, clientId: string, topic: string): Promise<void> {
  const offline = await connectClient(url, clientId, { clean: false });
  await offline.client.subscribeAsync(topic, { qos: 1 });
  await offline.client.endAsync();
}

const unbounded: { rssGrowth?: number; arrayBufferGrowth?: number } = {};

/** Counts the messages, and their payload bytes, that Aedes' plain persistence stores for `clientId`. */
async function storedMessages(testBroker: TestBroker, clientId: string): Promise<{ count: number; bytes: number }> {
  let count = 0;
  let bytes = 0;
  // Aedes' type declarations leave out the persistence it keeps.
  const { persistence } = testBroker.broker as unknown as { persistence: { outgoingStream(client: { id: string }): AsyncIterable<unknown> } };
  for await (const packet of persistence.outgoingStream({ id: clientId })) {
    count += 1;
    bytes += (packet as { payload: Buffer }).payload.length;
  }
  return { count, bytes };
}

test('plain persistence keeps every message', async () => {
  const testBroker = await startBroker({ bounded: false });
  const topic = `flood/${uniqueId('plain')}`;
  const offlineId = uniqueId('plain-offline');
  try {
    await subscribeAndLeave(testBroker.url, offlineId, topic);
    const result = await flood(testBroker.url, topic, uniqueId('plain-online'), uniqueId('plain-pub'));
    expect(result.online).toHaveLength(COUNT);
    unbounded.rssGrowth = result.rssGrowth;
    unbounded.arrayBufferGrowth = result.arrayBufferGrowth;

    // Aedes' own store contains every message for the offline subscriber.
    const stored = await storedMessages(testBroker, offlineId);
    expect(stored).toEqual({ count: COUNT, bytes: COUNT * SIZE });

    // Most of it shows in process memory. The reading before the flood may include
    // garbage that is collected during the flood, so the growth is not exact.
    expect(result.arrayBufferGrowth).toBeGreaterThan(COUNT * SIZE * 0.8);
  } finally {
    await testBroker.close();
  }
});

describe.each(['drop-new', 'drop-oldest'] as const)('policy %s', (policy) => {
  test('offline subscriber stays within budget', async () => {
    const offlineId = uniqueId(`offline-${policy}`);
    const topic = `flood/${offlineId}`;
    manager.setClientMemoryLimit(offlineId, LIMIT);
    const testBroker = await startBroker({ policy, expiryInterval: 3600 });
    const persistence = testBroker.persistence!;
    let back: TestClient | undefined;
    try {
      await subscribeAndLeave(testBroker.url, offlineId, topic);
      await waitFor(() => persistence.clientStats(offlineId)?.connected === false, 'the subscriber to go offline');

      let sampledPeak = 0;
      persistence.on('drop', (event) => {
        if (event.clientId === offlineId) sampledPeak = Math.max(sampledPeak, usageOf(offlineId));
      });
      const result = await flood(testBroker.url, topic, uniqueId(`online-${policy}`), uniqueId(`pub-${policy}`));

      // The online subscriber got everything, in order; the publisher stayed.
      expect(result.online).toEqual(range(0, COUNT));
      expect(result.publisherCloses).toBe(0);

      // The offline subscriber's session never went past its limit.
      const allocatorPeak = sessions.sessionAllocators.getSessionAllocator(offlineId).peak;
      expect(allocatorPeak).toBeLessThanOrEqual(LIMIT);
      expect(sampledPeak).toBeLessThanOrEqual(LIMIT);
      const stats = persistence.clientStats(offlineId)!;
      const keptCount = stats.queuedMessages;
      expect(keptCount).toBeGreaterThan(0);
      expect(keptCount).toBeLessThanOrEqual(LIMIT / SIZE);
      expect(stats.queuedBytes).toBe(keptCount * SIZE);
      expect(usageOf(offlineId)).toBeGreaterThanOrEqual(keptCount * SIZE);
      expect(usageOf(offlineId)).toBeLessThanOrEqual(LIMIT);
      expect(stats.dropped).toBe(COUNT - keptCount);
      if (policy === 'drop-oldest') expect(stats.evicted).toBe(COUNT - keptCount);

      // What the process retained is bounded: far below the 5,000 KiB of
      // payload, both in V8's ArrayBuffers and in tcmalloc's own count of
      // what is allocated. RSS is only logged: it also keeps the heap that
      // the flood's garbage grew, which differs between Node versions.
      expect(result.arrayBufferGrowth).toBeLessThan(COUNT * SIZE * 0.2);
      if (result.backendGrowth !== undefined) expect(result.backendGrowth).toBeLessThanOrEqual(LIMIT);
      console.log(
        `${policy}: kept ${keptCount} messages, usage ${usageOf(offlineId)} B, peak ${allocatorPeak} B, ` +
          `RSS growth ${(result.rssGrowth / 1024).toFixed(0)} KiB (without the wrapper ${((unbounded.rssGrowth ?? NaN) / 1024).toFixed(0)} KiB), ` +
          `arrayBuffers growth ${(result.arrayBufferGrowth / 1024).toFixed(0)} KiB (without ${((unbounded.arrayBufferGrowth ?? NaN) / 1024).toFixed(0)} KiB), ` +
          `tcmalloc growth ${result.backendGrowth ?? '–'} B`,
      );

      // Back online: exactly the kept messages, in order, once each.
      back = await connectClient(testBroker.url, offlineId, { clean: false });
      expect(back.sessionPresent).toBe(true);
      const delivered = back;
      await waitFor(() => delivered.received.length >= keptCount, 'the kept messages to arrive');
      await delay(200);
      const expected = policy === 'drop-new' ? range(0, keptCount) : range(COUNT - keptCount, COUNT);
      expect(back.received).toEqual(expected);

      // Their acks release every buffer.
      await waitFor(() => usageOf(offlineId) === 0, 'the acks to release the stored messages');
      expect(persistence.clientStats(offlineId)).toMatchObject({ queuedMessages: 0, inflightMessages: 0 });
    } finally {
      if (back !== undefined) await endClient(back.client);
      await testBroker.close();
    }
  });
});
