// broker-throughput: stock Aedes (default in-memory persistence) against
// Aedes with createBoundedPersistence(), limits set far above what is ever
// stored so nothing is dropped. Each broker runs in a child process of its
// own (bench/broker-server.js) on 127.0.0.1; one publisher and 10
// subscribers, all MQTT.js clients, run in this process. Subscribers connect
// with clean: false, the sessions the wrapper stores messages for; QoS 1,
// 1 KiB payloads. A round publishes a burst (at most WINDOW unacknowledged
// publishes at a time) and ends when every subscriber has every message.
// The figure is messages delivered to all subscribers per second. The
// brokers take turns, one round each, and each round starts a new broker
// process with new clients and a warm-up burst. Where the scheduler places
// a process and what shares its caches differ from one process to the
// next, and a broker kept for the whole run measured that one placement in
// every round: whole runs read high or low. Each round also reads the
// broker process's CPU time, for its cost per delivered message, and the
// TCP segments that the machine sent, per published message.
//
// A third broker, copying, is a reference: stock Aedes whose persistence
// stores a plain Buffer copy of each payload per subscriber, with no limits
// and no accounting. Its ratio to stock shows what one copy per subscriber
// costs in this setup, apart from how this package makes and accounts it.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { fork } = require('node:child_process');
const { once } = require('node:events');
const mqtt = require('mqtt');
const common = require('./common');

const SUBSCRIBERS = 10;
const PAYLOAD_SIZE = 1024;
const WINDOW = 64;
const TOPIC = 'bench/throughput';
const ROUND_TIMEOUT_MS = 120_000;
// Messages published before each measured burst, on the same connections.
const WARM_UP = 2_000;

function startBroker(variant, backend) {
  const child = fork(path.join(__dirname, 'broker-server.js'), [variant], {
    env: { ...process.env, MQTT_ALLOCATOR_BACKEND: backend },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${variant} broker exited with ${code} before listening`)));
    child.on('message', (message) => {
      if (message?.type === 'listening') resolve({ child, url: `mqtt://127.0.0.1:${message.port}` });
    });
  });
}

/** Returns the broker process's CPU time so far, in microseconds. */
function brokerCpu({ child }) {
  return new Promise((resolve) => {
    const onMessage = (message) => {
      if (message?.type !== 'cpu') return;
      child.off('message', onMessage);
      resolve(message.value);
    };
    child.on('message', onMessage);
    child.send({ type: 'cpu' });
  });
}

async function stopBroker({ child }) {
  const result = new Promise((resolve) => {
    child.on('message', (message) => {
      if (message?.type === 'result') resolve(message.value);
    });
  });
  child.send({ type: 'stop' });
  const [value] = await Promise.all([result, once(child, 'exit')]);
  return value;
}

async function connect(url, clientId, options) {
  const client = mqtt.connect(url, { clientId, reconnectPeriod: 0, connectTimeout: 10_000, ...options });
  await new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  return client;
}

/** Connects the publisher and the subscribers of one broker. */
async function connectClients(url, variant) {
  const subscribers = [];
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const client = await connect(url, `bench-${variant}-sub-${i}`, { clean: false });
    await client.subscribeAsync(TOPIC, { qos: 1 });
    const subscriber = { client, received: 0 };
    client.on('message', () => {
      subscriber.received += 1;
    });
    subscribers.push(subscriber);
  }
  const publisher = await connect(url, `bench-${variant}-pub`, { clean: true });
  return { publisher, subscribers };
}

/** Publishes `messages` messages and resolves with delivered messages per second. */
function burst({ publisher, subscribers }, messages) {
  const payload = Buffer.alloc(PAYLOAD_SIZE, 0x61);
  const expected = messages * SUBSCRIBERS;
  for (const s of subscribers) s.received = 0;
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    let sent = 0;
    let acked = 0;
    const timer = setTimeout(() => {
      clearInterval(poll);
      const delivered = subscribers.reduce((sum, s) => sum + s.received, 0);
      reject(new Error(`round timed out after ${ROUND_TIMEOUT_MS} ms: ${delivered} of ${expected} delivered, ${acked} of ${messages} acknowledged`));
    }, ROUND_TIMEOUT_MS);
    const poll = setInterval(() => {
      const delivered = subscribers.reduce((sum, s) => sum + s.received, 0);
      if (delivered < expected) return;
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      clearInterval(poll);
      clearTimeout(timer);
      resolve(delivered / seconds);
    }, 1);
    const next = () => {
      if (sent >= messages) return;
      sent += 1;
      publisher.publish(TOPIC, payload, { qos: 1 }, (error) => {
        if (error) {
          clearInterval(poll);
          clearTimeout(timer);
          reject(error);
          return;
        }
        acked += 1;
        next();
      });
    };
    for (let i = 0; i < WINDOW; i++) next();
  });
}

/**
 * Returns the TCP segments sent on this machine so far (Linux's OutSegs), or
 * undefined where /proc/net/snmp cannot be read. Other processes' traffic
 * counts too, so the figure is only meaningful on an otherwise idle network.
 */
function sentSegments() {
  let text;
  try {
    text = fs.readFileSync('/proc/net/snmp', 'utf8');
  } catch {
    return undefined;
  }
  const [names, values] = text.split('\n').filter((line) => line.startsWith('Tcp:')).map((line) => line.split(/\s+/));
  const column = names?.indexOf('OutSegs') ?? -1;
  return column < 0 || values === undefined ? undefined : Number(values[column]);
}

async function closeClients({ publisher, subscribers }) {
  await Promise.all([publisher, ...subscribers.map((s) => s.client)].map((c) => c.endAsync()));
}

/**
 * Starts a new broker process of `variant` with new clients, warms it up,
 * measures one burst of `messages` messages and stops it. Returns the rate,
 * the broker's CPU ns per delivery, the TCP segments per message (or
 * undefined where they cannot be read) and the broker's report at stop.
 */
async function measureRound(variant, backend, messages) {
  const broker = await startBroker(variant, backend);
  let clients;
  let measured;
  try {
    clients = await connectClients(broker.url, variant);
    await burst(clients, Math.min(messages, WARM_UP));
    const before = await brokerCpu(broker);
    const segmentsBefore = sentSegments();
    const rate = await burst(clients, messages);
    const segmentsAfter = sentSegments();
    const used = (await brokerCpu(broker)) - before;
    measured = {
      rate,
      cpuPerDelivery: (used * 1000) / (messages * SUBSCRIBERS),
      segments: segmentsBefore === undefined || segmentsAfter === undefined ? undefined : (segmentsAfter - segmentsBefore) / messages,
    };
  } finally {
    if (clients !== undefined) await closeClients(clients);
    // After a failure, a broker still running would keep this process alive
    // through its IPC channel.
    if (measured === undefined) broker.child.kill();
  }
  return { ...measured, report: await stopBroker(broker) };
}

/** Adds a round's broker report to the ones before it. */
function mergeReports(total, report) {
  if (total === undefined) return report;
  return {
    ...report,
    dropped: total.dropped + report.dropped,
    disconnected: total.disconnected + report.disconnected,
    usageAtStop: Math.max(total.usageAtStop, report.usageAtStop),
    usageAfterClose: Math.max(total.usageAfterClose, report.usageAfterClose),
  };
}

async function run({ quick }) {
  const backend = 'tcmalloc';
  const messages = quick ? 1_000 : 20_000;
  const rounds = quick ? 3 : 15;
  const variants = ['stock', 'copying', 'bounded'];
  const samples = { stock: [], copying: [], bounded: [] };
  // Broker CPU time per delivered message, in ns.
  const cpu = { stock: [], copying: [], bounded: [] };
  // TCP segments sent on the machine per published message.
  const segments = { stock: [], copying: [], bounded: [] };
  // What each broker reported at its stop: the bounded broker's drops are
  // summed over its rounds, and its usage after close is the highest seen.
  const brokerReports = {};
  for (let round = 0; round < rounds; round++) {
    // The order rotates. Over a multiple of three rounds (15, or 3 with
    // --quick), each broker runs first, second and last equally often.
    const order = variants.map((_, i) => variants[(i + round) % variants.length]);
    for (const variant of order) {
      const measured = await measureRound(variant, backend, messages);
      samples[variant].push(measured.rate);
      cpu[variant].push(measured.cpuPerDelivery);
      if (measured.segments !== undefined) segments[variant].push(measured.segments);
      brokerReports[variant] = mergeReports(brokerReports[variant], measured.report);
    }
  }
  return {
    backend,
    messages,
    rounds,
    subscribers: SUBSCRIBERS,
    stock: common.summarize(samples.stock),
    copying: common.summarize(samples.copying),
    bounded: common.summarize(samples.bounded),
    ratio: common.pairedRatios(samples.bounded, samples.stock),
    copyingRatio: common.pairedRatios(samples.copying, samples.stock),
    cpuStock: common.summarize(cpu.stock),
    cpuCopying: common.summarize(cpu.copying),
    cpuBounded: common.summarize(cpu.bounded),
    cpuRatio: common.pairedRatios(cpu.bounded, cpu.stock),
    cpuCopyingRatio: common.pairedRatios(cpu.copying, cpu.stock),
    segments: segments.stock.length === 0 ? undefined : {
      stock: common.summarize(segments.stock),
      copying: common.summarize(segments.copying),
      bounded: common.summarize(segments.bounded),
    },
    brokers: brokerReports,
  };
}

module.exports = { run };
if (require.main === module) {
  run({ quick: process.argv.includes('--quick') }).then(
    (value) => console.log(JSON.stringify(value, null, 2)),
    (error) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
