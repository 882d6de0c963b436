// Under 'drop-oldest', the wrapper evicts only when evicting makes the new
// message fit: as the backend charges it, not as its payload size reads.
import type { DropEvent } from '../../lib/aedes';
import { connectClient, delay, endClient, indexedPayload, manager, startBroker, TestBroker, uniqueId, usageOf, waitFor } from './helpers';

const LIMIT = 10_000;
const QUEUED = 4;

/** Starts a broker, queues QUEUED messages of 1,000 bytes for the offline
 * subscriber `clientId`, then publishes one message of `size` bytes to it. */
async function publishAfterQueued(clientId: string, size: number): Promise<{ testBroker: TestBroker; drops: DropEvent[] }> {
  const topic = `eviction/${clientId}`;
  manager.setClientMemoryLimit(clientId, LIMIT);
  const testBroker = await startBroker({ policy: 'drop-oldest', expiryInterval: 3600 });
  const persistence = testBroker.persistence!;
  const drops: DropEvent[] = [];
  persistence.on('drop', (event) => drops.push(event));

  const subscriber = await connectClient(testBroker.url, clientId, { clean: false });
  await subscriber.client.subscribeAsync(topic, { qos: 1 });
  await endClient(subscriber.client);
  await waitFor(() => persistence.clientStats(clientId)?.connected === false, 'the subscriber to go offline');

  const publisher = await connectClient(testBroker.url, uniqueId('eviction-pub'));
  for (let i = 0; i < QUEUED; i += 1) await publisher.client.publishAsync(topic, indexedPayload(i, 1000), { qos: 1 });
  await publisher.client.publishAsync(topic, indexedPayload(QUEUED, size), { qos: 1 });
  await endClient(publisher.client);
  return { testBroker, drops };
}

describe("'drop-oldest' and a message near the limit", () => {
  test('a message charged past the limit evicts nothing', async () => {
    const clientId = uniqueId('eviction-never');
    let limitEvents = 0;
    const onLimit = (event: { clientId?: string }): void => {
      if (event.clientId === clientId) limitEvents += 1;
    };
    manager.on('limitExceeded', onLimit);
    // 9,999 bytes pass a 10,000-byte limit as requested, but both backends
    // charge more than 10,000 for them.
    const { testBroker, drops } = await publishAfterQueued(clientId, 9999).finally(() => manager.off('limitExceeded', onLimit));
    try {
      expect(limitEvents).toBe(1);
      expect(drops.map((event) => event.reason)).toEqual(['limit-exceeded']);
      expect(drops[0].bytes).toBe(9999);
      expect(testBroker.persistence!.clientStats(clientId)).toMatchObject({ queuedMessages: QUEUED, evicted: 0 });

      const back = await connectClient(testBroker.url, clientId, { clean: false });
      await waitFor(() => back.received.length >= QUEUED, 'the queued messages to arrive');
      await delay(100);
      expect(back.received).toEqual([0, 1, 2, 3]);
      await endClient(back.client);
    } finally {
      await testBroker.close();
    }
  });

  test('a message that fits once others go evicts the oldest', async () => {
    const clientId = uniqueId('eviction-fits');
    const { testBroker, drops } = await publishAfterQueued(clientId, 8000);
    try {
      const reasons = new Set(drops.map((event) => event.reason));
      expect([...reasons]).toEqual(['evicted']);
      const stats = testBroker.persistence!.clientStats(clientId)!;
      expect(stats.evicted).toBe(drops.length);
      expect(stats.queuedMessages).toBe(QUEUED - drops.length + 1);
      expect(usageOf(clientId)).toBeLessThanOrEqual(LIMIT);

      // The newest message is kept, after the oldest kept ones.
      const back = await connectClient(testBroker.url, clientId, { clean: false });
      await waitFor(() => back.received.length >= stats.queuedMessages, 'the kept messages to arrive');
      expect(back.received.at(-1)).toBe(QUEUED);
      await endClient(back.client);
    } finally {
      await testBroker.close();
    }
  });
});
