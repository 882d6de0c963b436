// The bounded broker: a real Aedes MQTT broker whose per-client session data
// is held in session buffers and bounded by per-client byte limits.
import net from 'node:net';
import http from 'node:http';
import { once } from 'node:events';

import { Aedes } from 'aedes';
import type { Logger } from 'pino';
import { Registry, collectDefaultMetrics } from 'prom-client';

import { createBoundedPersistence, BoundedPersistence, OverflowAction } from '../aedes';
import { applyConfig } from '../config/apply-config';
import { SessionAllocatorConfig } from '../config/load-config';
import { flushRefusalLog, GlobalSessionManager } from '../global-manager';
import { registerPrometheusMetrics } from '../metrics';
import { createHttpServer } from './http-server';

export interface BrokerOptions {
  config: SessionAllocatorConfig;
  host: string;
  /** MQTT port; 0 picks a free one. */
  port: number;
  /** HTTP port for /metrics and /allocators; 0 picks a free one. */
  httpPort: number;
  logger: Logger;
  /** Action taken for a subscriber over its limit. */
  policy: OverflowAction;
}

export interface RunningBroker {
  broker: Aedes;
  persistence: BoundedPersistence;
  mqttAddress: net.AddressInfo;
  httpAddress: net.AddressInfo;
  /** Stops accepting, disconnects clients, releases every session buffer. */
  close(): Promise<void>;
}

/** Starts the broker and its HTTP server; resolves once both listen. */
export async function startBroker(options: BrokerOptions): Promise<RunningBroker> {
  const manager = GlobalSessionManager.instance();
  manager.setLogger(options.logger.child({ component: 'allocator' }));
  applyConfig(options.config, manager);

  const persistence = createBoundedPersistence({
    manager,
    policy: options.policy,
    logger: options.logger.child({ component: 'persistence' }),
    expiryInterval: options.config.sessionExpiry,
  });
  const broker = await Aedes.createBroker({ persistence });
  broker.on('clientError', (client, error) => {
    options.logger.debug({ clientId: client?.id, err: error }, 'client error');
  });

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  registerPrometheusMetrics(registry, { topClients: options.config.metrics.topClients, manager, persistence });

  const mqttServer = net.createServer(broker.handle);
  const httpServer = createHttpServer(registry, manager);

  // Stops the servers, the broker and the timers, and releases every session buffer.
  const release = async (): Promise<void> => {
    mqttServer.close();
    closeHttp(httpServer);
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    await persistence.destroy();
    flushRefusalLog();
    manager.stopExpiryCleanup();
  };

  mqttServer.listen(options.port, options.host);
  httpServer.listen(options.httpPort, options.host);
  try {
    await Promise.all([listening(mqttServer, 'MQTT'), listening(httpServer, 'HTTP')]);
  } catch (error) {
    // A port in use fails one server, while the other one listens and
    // would keep the process running.
    await release();
    throw error;
  }
  const mqttAddress = mqttServer.address() as net.AddressInfo;
  const httpAddress = httpServer.address() as net.AddressInfo;
  options.logger.info(
    { mqtt: `${mqttAddress.address}:${mqttAddress.port}`, http: `${httpAddress.address}:${httpAddress.port}`, backend: manager.getBackendInfo().name },
    'broker listening',
  );

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await release();
      options.logger.info({ globalUsage: manager.getGlobalMemoryUsage() }, 'broker stopped');
    })();
    return closing;
  };
  return { broker, persistence, mqttAddress, httpAddress, close };
}

/** Resolves once `server` listens; rejects with an error that names it. */
async function listening(server: net.Server, name: string): Promise<void> {
  try {
    await once(server, 'listening');
  } catch (error) {
    throw new Error(`the ${name} server cannot listen: ${(error as Error).message}`, { cause: error });
  }
}

function closeHttp(server: http.Server): void {
  server.close();
  server.closeAllConnections();
}
