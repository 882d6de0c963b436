// Environment variables the package reads as it loads. An invalid value is
// logged once, naming the variable, the value and what is expected, and the
// package still loads with the default in its place.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

import { PACKAGE_ROOT } from './helpers/memory';

const execFileAsync = promisify(execFile);

interface LogLine {
  msg?: string;
  variable?: string;
  value?: string;
  [key: string]: unknown;
}

/** Loads the package in a new process with `env` added, and returns what it
 * printed: its backend's name on stdout, and its log lines from stderr. */
async function load(env: NodeJS.ProcessEnv): Promise<{ backend: string; lines: LogLine[] }> {
  const entry = JSON.stringify(path.join(PACKAGE_ROOT, 'dist', 'index.js'));
  const script = `console.log(require(${entry}).GlobalSessionManager.instance().getBackendInfo().name);`;
  const { stdout, stderr } = await execFileAsync(process.execPath, ['-e', script], { env: { ...process.env, ...env } });
  const lines = stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);
  return { backend: stdout.trim(), lines };
}

test.each<[string, string, string]>([
  ['MQTT_ALLOCATOR_LOG_LEVEL', 'loud', 'trace, debug, info, warn, error, fatal, silent'],
  ['MQTT_ALLOCATOR_BACKEND', 'jemalloc', 'system, tcmalloc, auto'],
])('invalid %s is logged and ignored', async (variable, value, expected) => {
  const { backend, lines } = await load({ MQTT_ALLOCATOR_LOG_LEVEL: 'warn', [variable]: value });

  expect(backend).toMatch(/^(tcmalloc|system)$/);
  const warnings = lines.filter((line) => line.variable === variable);
  expect(warnings).toHaveLength(1);
  expect(warnings[0].value).toBe(value);
  expect(warnings[0].msg).toContain(`invalid ${variable} "${value}": expected one of ${expected}`);
});

test('valid settings log no warning', async () => {
  const { lines } = await load({ MQTT_ALLOCATOR_LOG_LEVEL: 'warn', MQTT_ALLOCATOR_BACKEND: 'tcmalloc' });

  expect(lines.filter((line) => line.variable !== undefined)).toEqual([]);
});
