// Shared set-up for the Aedes tests: a real broker on an ephemeral loopback
// port and real MQTT.js clients.
import net from 'node:net';
import { once } from 'node:events';

import mqtt, { IClientOptions, MqttClient } from 'mqtt';
import type { Aedes } from 'aedes';

import { BoundedPersistenceOptions, createBoundedPersistence, BoundedPersistence } from '../../lib/aedes';
import { GlobalSessionManager } from '../../lib/global-manager';

// Aedes 1.x ships only as an ES module, which jest's CommonJS loader cannot
// run; Node's own require (which loads ES modules since 20.19) can.
function nodeRequire(id: string): unknown {
  const getBuiltin = (process as unknown as { getBuiltinModule(name: string): unknown }).getBuiltinModule;
  const nodeModule = getBuiltin('node:module') as typeof import('node:module');
  return nodeModule.createRequire(__filename)(id);
}

export const { Aedes: AedesBroker } = nodeRequire('aedes') as typeof import('aedes');

export const manager = GlobalSessionManager.instance();
export const sessions = manager.getThreadManager();

let idCounter = 0;
/** Returns a client id no other test uses, since sessions are process-wide. */
export function uniqueId(prefix: string): string {
  idCounter += 1;
  return `${prefix}-${process.pid}-${idCounter}`;
}

export interface TestBroker {
  broker: Aedes;
  persistence: BoundedPersistence | undefined;
  url: string;
  close(): Promise<void>;
}

/** Starts Aedes on 127.0.0.1 with an ephemeral port, with the bounded
 * persistence (or, given `bounded: false`, the plain in-memory one). */
export async function startBroker(options: BoundedPersistenceOptions & { bounded?: boolean } = {}): Promise<TestBroker> {
  const { bounded = true, ...persistenceOptions } = options;
  const persistence = bounded ? createBoundedPersistence({ expiryCheckInterval: 0, ...persistenceOptions }) : undefined;
  const broker = await AedesBroker.createBroker(persistence === undefined ? {} : { persistence });
  const server = net.createServer(broker.handle);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  return {
    broker,
    persistence,
    url: `mqtt://127.0.0.1:${port}`,
    async close() {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (persistence !== undefined) await persistence.destroy();
    },
  };
}

export interface TestClient {
  client: MqttClient;
  /** Indices (first 4 payload bytes) of the messages received, in order. */
  received: number[];
  sessionPresent: boolean;
  errors: Error[];
}

/** Connects an MQTT.js client (no automatic reconnect); the message
 * collector is attached before CONNACK, so queued messages sent right after
 * it are not missed. */
export async function connectClient(url: string, clientId: string, options: IClientOptions = {}): Promise<TestClient> {
  const client = mqtt.connect(url, { clientId, reconnectPeriod: 0, connectTimeout: 5000, ...options });
  const result: TestClient = { client, received: [], sessionPresent: false, errors: [] };
  // Kept listening: a connection the broker closes may report an error, which
  // an emitter without a listener would throw.
  client.on('error', (error) => result.errors.push(error));
  client.on('message', (_topic, payload) => {
    result.received.push(payload.length >= 4 ? payload.readUInt32BE(0) : -1);
  });
  result.sessionPresent = await new Promise<boolean>((resolve, reject) => {
    client.once('connect', (connack) => resolve(connack.sessionPresent));
    client.once('error', reject);
  });
  return result;
}

/** Builds a payload of `size` bytes whose first 4 bytes carry `index`. */
export function indexedPayload(index: number, size: number): Buffer {
  const payload = Buffer.alloc(Math.max(size, 4), index & 0xff);
  payload.writeUInt32BE(index, 0);
  return payload;
}

/** Publishes `count` messages with at most `window` awaiting their ack. */
export async function publishMany(
  client: MqttClient,
  topic: string,
  count: number,
  size: number,
  qos: 1 | 2,
  window = 100,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const index = next;
      next += 1;
      await client.publishAsync(topic, indexedPayload(index, size), { qos });
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, count) }, worker));
}

/** Resolves once `predicate` holds; rejects after `timeoutMs` with `what`. */
export async function waitFor(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Returns the client's session usage in bytes (0 once nothing is charged). */
export function usageOf(clientId: string): number {
  return manager.getClientMemoryUsage().get(clientId) ?? 0;
}

/** Runs the collector a few times so that finalizers of dropped buffers run. */
export async function settleGarbage(): Promise<void> {
  const gc = (global as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i += 1) {
    gc?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

export async function endClient(client: MqttClient): Promise<void> {
  if (client.connected || client.reconnecting) await client.endAsync();
}

/** The clients one test connects, ended together after it. */
export class TestClients {
  private readonly open: TestClient[] = [];

  async connect(url: string, clientId: string, options: IClientOptions = {}): Promise<TestClient> {
    const connected = await connectClient(url, clientId, options);
    this.open.push(connected);
    return connected;
  }

  /** Subscribes a persistent client to `topics` and disconnects it, leaving
   * its session offline on `broker`. */
  async leaveOffline(broker: TestBroker, clientId: string, topics: string | string[], qos: 1 | 2 = 1): Promise<void> {
    const subscriber = await this.connect(broker.url, clientId, { clean: false });
    await subscriber.client.subscribeAsync(topics, { qos });
    await subscriber.client.endAsync();
    await waitFor(() => broker.persistence!.clientStats(clientId)?.connected === false, 'the subscriber to go offline');
  }

  async endAll(): Promise<void> {
    for (const { client } of this.open.splice(0)) await endClient(client);
  }
}
