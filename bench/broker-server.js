// The broker side of bench/broker-throughput.js: one Aedes on 127.0.0.1 with
// an ephemeral port, either stock (the default in-memory persistence) or
// wrapped by createBoundedPersistence(). It is started with fork() and sends
// { type: 'listening', port }. On { type: 'cpu' } it sends { type: 'cpu',
// value } with its CPU time so far in microseconds. On { type: 'stop' } it
// closes the broker, sends { type: 'result', value } with the wrapper's drop
// counts and exits.
'use strict';
const net = require('node:net');
const { once } = require('node:events');
const { createRequire } = require('node:module');
const common = require('./common');

// Each subscriber's limit. It is far above what a round keeps stored, so the
// wrapper checks the limit on every store but never rejects one.
const CLIENT_LIMIT = 512 * 1024 * 1024;

async function main() {
  const variant = process.argv[2];
  if (variant !== 'stock' && variant !== 'bounded') throw new Error(`invalid variant '${variant}': expected 'stock' or 'bounded'`);
  // Aedes 1.x is an ES module, which require() loads on Node 20.19 and later.
  const { Aedes } = createRequire(__filename)('aedes');

  let persistence;
  let manager;
  if (variant === 'bounded') {
    const pkg = common.loadPackage();
    manager = pkg.GlobalSessionManager.instance();
    manager.setDefaultClientMemoryLimit(CLIENT_LIMIT);
    persistence = pkg.createBoundedPersistence({ expiryCheckInterval: 0, policy: 'drop-new' });
  }
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
    const stats = persistence?.stats();
    const usage = manager?.getGlobalMemoryUsage();
    await new Promise((resolve) => broker.close(resolve));
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
    if (persistence !== undefined) await persistence.destroy();
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
