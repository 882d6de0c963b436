// The compiled package: `require` and `import` expose the same names.
import { spawnSync } from 'node:child_process';
import path from 'node:path';

import { PACKAGE_ROOT } from './helpers/memory';

const EXPECTED = [
  'AllocatorHandle',
  'ErrorCode',
  'GlobalSessionManager',
  'MemoryTag',
  'MqttAllocatorError',
  'SessionAllocatorManager',
  'SessionQueue',
  'ThreadLocalSessionManager',
  'mqttErrorString',
];

// Runs in a plain node process: jest's module system would turn import()
// into require().
const script = `
const root = process.argv[1];
const cjs = require(root);
import(require('node:url').pathToFileURL(require('node:path').join(root, 'dist', 'index.mjs')).href).then((esm) => {
  const names = (api) => Object.keys(api).filter((name) => name !== 'default' && name !== '__esModule').sort();
  const same = names(cjs).filter((name) => cjs[name] === esm[name]);
  console.log(JSON.stringify({ cjs: names(cjs), esm: names(esm), same, defaultIsCjs: esm.default === cjs }));
});
`;

interface Report {
  cjs: string[];
  esm: string[];
  same: string[];
  defaultIsCjs: boolean;
}

let report: Report;

beforeAll(() => {
  const result = spawnSync(process.execPath, ['-e', script, PACKAGE_ROOT], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`node exited with ${result.status}: ${result.stderr}`);
  report = JSON.parse(result.stdout) as Report;
});

describe('package entry points', () => {
  test('require exposes the public names', () => {
    expect(report.cjs).toEqual(expect.arrayContaining(EXPECTED));
  });

  test('import exposes the public names', () => {
    expect(report.esm).toEqual(expect.arrayContaining(EXPECTED));
  });

  test('require and import expose the same names', () => {
    expect(report.esm).toEqual(report.cjs);
  });

  test('require and import share one instance of each export', () => {
    expect(report.same).toEqual(report.cjs);
  });

  test('the default import is the CommonJS module', () => {
    expect(report.defaultIsCjs).toBe(true);
  });

  test('main points at dist/index.js', () => {
    expect(require.resolve(PACKAGE_ROOT)).toBe(path.join(PACKAGE_ROOT, 'dist', 'index.js'));
  });
});
