#!/usr/bin/env node
// Command line of the bounded broker: `npm start` or `mqtt-session-broker`.
import { parseArgs } from 'node:util';

import pino from 'pino';

import { OverflowAction } from '../aedes';
import { ConfigError, loadConfig } from '../config/load-config';
import { isLogLevel, LOG_LEVELS } from '../logging';
import { startBroker } from './broker';

const USAGE = `Usage: mqtt-session-broker [options]

Runs an Aedes MQTT broker whose per-client session memory (offline queue,
inflight and inbound QoS 2 packets) is bounded by byte limits.

Options:
  --config FILE      configuration file (default: ./mqtts.yaml if present)
  --host HOST        address to listen on (default: 127.0.0.1)
  --port PORT        MQTT port (default: $MQTT_PORT or 1883)
  --http-port PORT   HTTP port for /metrics and /allocators (default: $HTTP_PORT or 9090)
  --policy POLICY    subscriber over its limit: drop-new, drop-oldest or disconnect
                     (default: drop-new)
  --log-level LEVEL  pino level (default: $LOG_LEVEL or info)
  -h, --help         show this help
`;

const POLICIES: readonly OverflowAction[] = ['drop-new', 'drop-oldest', 'disconnect'];

function parsePort(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) {
    throw new Error(`invalid ${name}: ${JSON.stringify(value)}; expected a port number from 0 to 65535`);
  }
  return port;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string' },
      'http-port': { type: 'string' },
      policy: { type: 'string', default: 'drop-new' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }

  const levelSource = values['log-level'] !== undefined ? '--log-level' : 'LOG_LEVEL';
  const level = values['log-level'] ?? (process.env.LOG_LEVEL || 'info');
  if (!isLogLevel(level)) {
    throw new Error(`invalid ${levelSource}: ${JSON.stringify(level)}; expected one of ${LOG_LEVELS.join(', ')}`);
  }
  const logger = pino({ name: 'mqtt-session-broker', level });
  const policy = values.policy as OverflowAction;
  if (!POLICIES.includes(policy)) {
    throw new Error(`invalid --policy: ${JSON.stringify(values.policy)}; expected ${POLICIES.join(', ')}`);
  }
  const port = values.port !== undefined
    ? parsePort('--port', values.port, 1883)
    : parsePort('MQTT_PORT', process.env.MQTT_PORT, 1883);
  const httpPort = values['http-port'] !== undefined
    ? parsePort('--http-port', values['http-port'], 9090)
    : parsePort('HTTP_PORT', process.env.HTTP_PORT, 9090);
  const config = loadConfig(values.config);

  const running = await startBroker({ config, host: values.host as string, port, httpPort, logger, policy });

  const stop = (signal: NodeJS.Signals): void => {
    logger.info({ signal }, 'shutting down');
    running.close().then(
      () => {
        process.exitCode = 0;
      },
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exitCode = 1;
      },
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((error: unknown) => {
  const message = error instanceof ConfigError || error instanceof Error ? error.message : String(error);
  process.stderr.write(`mqtt-session-broker: ${message}\n`);
  process.exitCode = 1;
});
