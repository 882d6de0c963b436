// The broker command end to end: a real process, the mosquitto command-line
// clients over loopback, the HTTP endpoints, and shutdown by SIGTERM.
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const CLI = path.join(__dirname, '..', '..', 'dist', 'broker', 'cli.js');
const PAYLOAD = 'x'.repeat(1024);

interface LogLine {
  msg?: string;
  mqtt?: string;
  http?: string;
  globalUsage?: number;
  [key: string]: unknown;
}

interface Broker {
  process: ChildProcess;
  mqttPort: number;
  httpPort: number;
  lines: LogLine[];
}

async function startBroker(configText: string): Promise<Broker> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mqsa-broker-'));
  const config = path.join(dir, 'mqtts.yaml');
  fs.writeFileSync(config, configText);
  const child = spawn(process.execPath, [CLI, '--config', config, '--port', '0', '--http-port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: LogLine[] = [];
  const listening = new Promise<LogLine>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (text) => {
      const line = JSON.parse(text) as LogLine;
      lines.push(line);
      if (line.msg === 'broker listening') resolve(line);
    });
    child.once('exit', (code) => reject(new Error(`broker exited early with code ${code}`)));
  });
  const line = await listening;
  return {
    process: child,
    mqttPort: Number(String(line.mqtt).split(':').pop()),
    httpPort: Number(String(line.http).split(':').pop()),
    lines,
  };
}

async function stopBroker(broker: Broker): Promise<number | null> {
  if (broker.process.exitCode !== null) return broker.process.exitCode;
  broker.process.kill('SIGTERM');
  const [code] = (await once(broker.process, 'exit')) as [number | null];
  return code;
}

async function subscribeOnce(port: number, clientId: string, seconds: number): Promise<string[]> {
  // -c keeps the session after disconnect; -W ends the run after `seconds`.
  try {
    const { stdout } = await execFileAsync('mosquitto_sub', [
      '-h', '127.0.0.1', '-p', String(port), '-t', 'demo/#', '-q', '1', '-c', '-i', clientId, '-W', String(seconds),
    ]);
    return stdout.split('\n').filter((line) => line !== '');
  } catch (error) {
    // mosquitto_sub exits with status 27 when -W runs out; what it printed is still the result.
    const output = (error as { stdout?: string }).stdout ?? '';
    return output.split('\n').filter((line) => line !== '');
  }
}

async function publish(port: number, count: number): Promise<void> {
  await execFileAsync('mosquitto_pub', [
    '-h', '127.0.0.1', '-p', String(port), '-t', 'demo/a', '-q', '1', '-m', PAYLOAD, '--repeat', String(count),
  ]);
}

async function getJson(port: number, route: string): Promise<unknown> {
  const response = await fetch(`http://127.0.0.1:${port}${route}`, { headers: { accept: 'application/json' } });
  return response.json();
}

interface Node {
  id: string;
  usage: number;
  limit: number;
  children: Node[];
}

function findNode(node: Node, id: string): Node | undefined {
  if (node.id === id) return node;
  for (const child of node.children) {
    const found = findNode(child, id);
    if (found) return found;
  }
  return undefined;
}

const CONFIG = `memory:
  default_client_limit: 64KiB
  session_expiry: 300
  cleanup_interval: 1
`;

describe('broker command', () => {
  let broker: Broker | undefined;

  afterEach(async () => {
    if (broker) await stopBroker(broker);
    broker = undefined;
  });

  test('offline subscriber bounded by its limit', async () => {
    broker = await startBroker(CONFIG);
    await subscribeOnce(broker.mqttPort, 'offline-sub', 1);

    await publish(broker.mqttPort, 1000);

    const tree = (await getJson(broker.httpPort, '/allocators')) as Node;
    const node = findNode(tree, 'offline-sub');
    expect(node?.limit).toBe(64 * 1024);
    expect(node?.usage).toBeGreaterThan(32 * 1024);
    expect(node?.usage).toBeLessThanOrEqual(64 * 1024);
    const received = await subscribeOnce(broker.mqttPort, 'offline-sub', 2);
    expect(received.length).toBeGreaterThan(0);
    expect(received.length).toBeLessThanOrEqual(64);
    expect(received.every((line) => line === PAYLOAD)).toBe(true);
  });

  test('metrics report the subscriber', async () => {
    broker = await startBroker(CONFIG);
    await subscribeOnce(broker.mqttPort, 'metrics-sub', 1);
    await publish(broker.mqttPort, 200);

    const response = await fetch(`http://127.0.0.1:${broker.httpPort}/metrics`);
    const text = await response.text();

    expect(response.headers.get('content-type')).toContain('text/plain');
    const match = /^mqtt_session_client_memory_bytes\{client_id="metrics-sub"\} (\d+)$/m.exec(text);
    expect(Number(match?.[1])).toBeGreaterThan(0);
    expect(Number(match?.[1])).toBeLessThanOrEqual(64 * 1024);
    expect(text).toMatch(/^mqtt_session_backend_info\{backend="(tcmalloc|system)"/m);
    expect(text).toMatch(/^mqtt_session_global_memory_bytes \d+$/m);
  });

  test('metrics count what the wrapper kept and dropped', async () => {
    broker = await startBroker(CONFIG);
    await subscribeOnce(broker.mqttPort, 'metrics-drops', 1);
    await publish(broker.mqttPort, 200);

    const text = await (await fetch(`http://127.0.0.1:${broker.httpPort}/metrics`)).text();
    const value = (series: string): number => {
      const line = text.split('\n').find((entry) => entry.startsWith(`${series} `));
      return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
    };

    // The offline subscriber keeps what fits in 64 KiB; the rest is dropped for it.
    const queued = value('mqtt_session_stored_messages{state="queued"}');
    const dropped = value('mqtt_session_dropped_messages_total');
    expect(queued).toBeGreaterThan(50);
    expect(dropped).toBeGreaterThan(100);
    expect(queued + dropped).toBe(200);
    expect(value('mqtt_session_stored_bytes{state="queued"}')).toBe(queued * 1024);
    expect(value('mqtt_session_evicted_messages_total')).toBe(0);
    expect(value('mqtt_session_overflow_disconnects_total')).toBe(0);
    expect(value('mqtt_session_expired_sessions_total')).toBe(0);
    expect(value('mqtt_session_stored_messages{state="inflight"}')).toBe(0);
  });

  test('allocators page rendered as HTML', async () => {
    broker = await startBroker(CONFIG);
    await subscribeOnce(broker.mqttPort, 'html-<sub>', 1);

    const response = await fetch(`http://127.0.0.1:${broker.httpPort}/allocators`);
    const html = await response.text();

    expect(response.headers.get('content-type')).toContain('text/html');
    expect(html).toContain('html-&#60;sub&#62;');
    expect(html).not.toContain('html-<sub>');
  });

  test('SIGTERM releases everything and exits 0', async () => {
    broker = await startBroker(CONFIG);
    await subscribeOnce(broker.mqttPort, 'sigterm-sub', 1);
    await publish(broker.mqttPort, 100);

    const code = await stopBroker(broker);

    expect(code).toBe(0);
    const stopped = broker.lines.find((line) => line.msg === 'broker stopped');
    expect(stopped?.globalUsage).toBe(0);
    // 100 KiB of messages for a 64 KiB limit: the summaries of the refusals
    // and drops are logged at shutdown, before their interval ends.
    const refused = broker.lines.find((line) => line.msg === 'allocations refused by memory limits');
    expect(refused?.refused).toBeGreaterThan(0);
    expect(broker.lines.some((line) => line.msg === 'session messages dropped by memory limits')).toBe(true);
  });

  test('invalid config exits 1 naming the key', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mqsa-broker-'));
    const config = path.join(dir, 'mqtts.yaml');
    fs.writeFileSync(config, 'memory:\n  global_limit: lots\n');

    const child = spawn(process.execPath, [CLI, '--config', config, '--port', '0', '--http-port', '0']);
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const [code] = (await once(child, 'exit')) as [number | null];

    expect(code).toBe(1);
    expect(stderr).toContain('memory.global_limit');
    expect(stderr).toContain('lots');
  });

  test.each<[string, string[], NodeJS.ProcessEnv]>([
    ['--log-level', ['--log-level', 'loud'], {}],
    ['LOG_LEVEL', [], { LOG_LEVEL: 'loud' }],
  ])('invalid %s exits 1 naming it', async (source, args, env) => {
    const child = spawn(process.execPath, [CLI, '--port', '0', '--http-port', '0', ...args], { env: { ...process.env, ...env } });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const [code] = (await once(child, 'exit')) as [number | null];

    expect(code).toBe(1);
    expect(stderr).toContain(`invalid ${source}: "loud"`);
    expect(stderr).toContain('expected one of');
  });

  test.each([
    ['--port', 'MQTT'],
    ['--http-port', 'HTTP'],
  ])('%s in use exits 1', async (option, server) => {
    const occupant = net.createServer();
    occupant.listen(0, '127.0.0.1');
    await once(occupant, 'listening');
    const port = String((occupant.address() as net.AddressInfo).port);
    try {
      const args = ['--port', '0', '--http-port', '0'];
      args[args.indexOf(option) + 1] = port;
      const child = spawn(process.execPath, [CLI, ...args]);
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      // Without an exit, the test times out.
      const [code] = (await once(child, 'exit')) as [number | null];

      expect(code).toBe(1);
      expect(stderr).toContain(`the ${server} server cannot listen: listen EADDRINUSE: address already in use 127.0.0.1:${port}`);
    } finally {
      occupant.close();
    }
  });
});
