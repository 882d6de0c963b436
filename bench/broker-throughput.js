// broker-throughput: stock Aedes (default in-memory persistence) against
// Aedes with createBoundedPersistence(), limits set far above what is ever
// stored so nothing is dropped. Each broker runs in a child process of its
// own (bench/broker-server.js) on 127.0.0.1; one publisher and 10
// subscribers, all MQTT.js clients, run in this process. Subscribers connect
// with clean: false, the sessions the wrapper stores messages for; QoS 1,
// 1 KiB payloads. A round publishes a burst (at most WINDOW unacknowledged
// publishes at a time) and ends when every subscriber has every message.
// The figure is messages delivered to all subscribers per second. Rounds
// alternate between the two brokers. Each round also reads the broker
// process's CPU time, for its cost per delivered message.
'use strict';
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

async function closeClients({ publisher, subscribers }) {
  await Promise.all([publisher, ...subscribers.map((s) => s.client)].map((c) => c.endAsync()));
}

async function run({ quick }) {
  const backend = 'tcmalloc';
  const messages = quick ? 1_000 : 20_000;
  const rounds = quick ? 3 : 9;
  const variants = ['stock', 'bounded'];
  const brokers = {};
  const clients = {};
  const samples = { stock: [], bounded: [] };
  // Broker CPU time per delivered message, in ns.
  const cpu = { stock: [], bounded: [] };
  try {
    for (const variant of variants) {
      brokers[variant] = await startBroker(variant, backend);
      clients[variant] = await connectClients(brokers[variant].url, variant);
      await burst(clients[variant], Math.min(messages, 2_000)); // warm-up
    }
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? variants : [...variants].reverse();
      for (const variant of order) {
        const before = await brokerCpu(brokers[variant]);
        samples[variant].push(await burst(clients[variant], messages));
        const used = (await brokerCpu(brokers[variant])) - before;
        cpu[variant].push((used * 1000) / (messages * SUBSCRIBERS));
      }
    }
  } finally {
    for (const variant of variants) if (clients[variant]) await closeClients(clients[variant]);
  }
  const brokerReports = {};
  for (const variant of variants) brokerReports[variant] = await stopBroker(brokers[variant]);
  return {
    backend,
    messages,
    rounds,
    subscribers: SUBSCRIBERS,
    stock: common.summarize(samples.stock),
    bounded: common.summarize(samples.bounded),
    ratio: common.pairedRatios(samples.bounded, samples.stock),
    cpuStock: common.summarize(cpu.stock),
    cpuBounded: common.summarize(cpu.bounded),
    cpuRatio: common.pairedRatios(cpu.bounded, cpu.stock),
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
