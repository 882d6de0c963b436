// The broker side of bench/broker-throughput.js: one Aedes on 127.0.0.1 with
// an ephemeral port. Its persistence is stock (Aedes' default in-memory one),
// copying (the same, given a Buffer copy of the payload for each subscriber)
// or bounded (createBoundedPersistence()). It is started with fork() and
// sends { type: 'listening', port }. On { type: 'cpu' } it sends { type: 'cpu',
// value } with its CPU time so far in microseconds. On { type: 'stop' } it
// closes the broker, sends { type: 'result', value } with the wrapper's drop
// counts and exits.
'use strict';
const net = require('node:net');
const { once } = require('node:events');
const { createRequire } = require('node:module');
const common = require('./common');

const VARIANTS = ['stock', 'copying', 'bounded'];

/** Makes Aedes' in-memory persistence store a new Buffer copy of the payload
 * for each subscriber, with no limits or accounting, as a reference cost. */
function copyingPersistence(persistence) {
  const enqueue = persistence.outgoingEnqueue.bind(persistence);
  persistence.outgoingEnqueueCombi = async (subs, packet) => {
    // outgoingEnqueue stores synchronously, so the calls are not awaited.
    for (const sub of subs) enqueue(sub, { ...packet, payload: Buffer.from(packet.payload) });
  };
  return persistence;
}

// Each subscriber's limit. It is far above what a round keeps stored, so the
// wrapper checks the limit on every store but never rejects one.
const CLIENT_LIMIT = 512 * 1024 * 1024;

async function main() {
  const variant = process.argv[2];
  if (!VARIANTS.includes(variant)) throw new Error(`invalid variant '${variant}': expected one of ${VARIANTS.join(', ')}`);
  // Aedes 1.x is an ES module, which require() loads on Node 20.19 and later.
  const load = createRequire(__filename);
  const { Aedes } = load('aedes');

  let persistence;
  let manager;
  if (variant === 'bounded') {
    const pkg = common.loadPackage();
    manager = pkg.GlobalSessionManager.instance();
    manager.setDefaultClientMemoryLimit(CLIENT_LIMIT);
    persistence = pkg.createBoundedPersistence({ expiryCheckInterval: 0, policy: 'drop-new' });
  }
  if (variant === 'copying') persistence = copyingPersistence(load('aedes-persistence')());
  const broker = await Aedes.createBroker(persistence === undefined ? {} : { persistence });
  const server = net.createServer(broker.handle);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const sockets = new Set();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  process.send({ type: 'listening', port: server.address().port });

  process.on('message', async (message) => {
    if (message?.type === 'cpu') {
      const used = process.cpuUsage();
      process.send({ type: 'cpu', value: used.user + used.system });
      return;
    }
    if (message?.type !== 'stop') return;
    const stats = variant === 'bounded' ? persistence.stats() : undefined;
    const usage = manager?.getGlobalMemoryUsage();
    await new Promise((resolve) => broker.close(resolve));
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
    if (variant === 'bounded') await persistence.destroy();
    const value = {
      variant,
      backend: manager?.getBackendInfo(),
      dropped: stats?.dropped ?? 0,
      disconnected: stats?.disconnected ?? 0,
      usageAtStop: usage ?? 0,
      usageAfterClose: manager?.getGlobalMemoryUsage() ?? 0,
    };
    process.send({ type: 'result', value }, () => process.disconnect());
  });
  process.on('disconnect', () => server.close());
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
