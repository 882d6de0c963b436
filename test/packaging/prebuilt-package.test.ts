// The npm package as a user gets it: packed with its prebuilt addon, then
// installed into an empty project on a PATH without compilers, build tools
// or cmake, so the install can only succeed by loading the prebuilt binary.
// The binary must carry its own tcmalloc and leave Node's allocator alone.
//
// Needs prebuilds/ (`npm run prebuild`); without it the tests are skipped,
// unless MQSA_REQUIRE_PREBUILD=1, as in CI, makes that a failure.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.join(__dirname, '..', '..');
const platformDir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const prebuilds = fs.existsSync(platformDir)
  ? fs.readdirSync(platformDir).filter((name) => name.endsWith('.node'))
  : [];
const required = process.env.MQSA_REQUIRE_PREBUILD === '1';
const run = prebuilds.length > 0 || required ? describe : describe.skip;

/** Runs a binutils tool on a file and returns its output. */
function tool(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8' });
}

// Runs in the installed project, through the package's public entry point.
const consumerScript = `
const path = require('node:path');
const { GlobalSessionManager } = require('mqtt-session-allocator');
const packageDir = path.dirname(require.resolve('mqtt-session-allocator/package.json'));
const addonFile = require('node-gyp-build').resolve(packageDir);

const manager = GlobalSessionManager.instance();
const heapBytes = () => manager.getBackendInfo().heap.currentAllocatedBytes;
const sessions = manager.getThreadManager();
sessions.registerSession('packaging-client', { memoryLimit: 1024 * 1024 });

// Node's own memory: a large Buffer and a large JS array.
const beforeNode = heapBytes();
const nodeBuffer = Buffer.alloc(8 * 1024 * 1024, 1);
const nodeArray = Array.from({ length: 1000000 }, (_, index) => index);
const afterNode = heapBytes();

const beforeOwn = heapBytes();
const buffers = [];
for (let i = 0; i < 16; i++) buffers.push(sessions.allocate('packaging-client', 16 * 1024));
const afterOwn = heapBytes();
for (const buffer of buffers) sessions.release(buffer);
const usageAfterRelease = sessions.getSessionMemoryUsage('packaging-client');

console.log(JSON.stringify({
  addonFile: path.relative(packageDir, addonFile),
  backend: manager.getBackendInfo(),
  nodeDelta: afterNode - beforeNode,
  ownDelta: afterOwn - beforeOwn,
  usageAfterRelease,
  keep: nodeBuffer.length + nodeArray.length > 0,
}));
`;

interface ConsumerReport {
  addonFile: string;
  backend: { name: string; source: string; version?: string; fallbackReason?: string };
  nodeDelta: number;
  ownDelta: number;
  usageAfterRelease: number;
}

run('prebuilt package', () => {
  let work: string;
  let project: string;
  let restrictedEnv: NodeJS.ProcessEnv;

  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'mqsa-packaging-'));
    project = path.join(work, 'project');
    fs.mkdirSync(project);
    fs.writeFileSync(
      path.join(project, 'package.json'),
      JSON.stringify({ name: 'packaging-consumer', version: '1.0.0', private: true }),
    );

    // A bin directory with node, npm and a shell only: no cc, g++, make,
    // cmake or python, so any attempt to build from source fails.
    const bin = path.join(work, 'bin');
    fs.mkdirSync(bin);
    const npmCli = fs.realpathSync(execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim());
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    fs.symlinkSync(npmCli, path.join(bin, 'npm'));
    fs.symlinkSync('/bin/sh', path.join(bin, 'sh'));
    restrictedEnv = {
      HOME: process.env.HOME,
      PATH: bin,
      npm_config_build_from_source: 'false',
      npm_config_audit: 'false',
      npm_config_fund: 'false',
      npm_config_update_notifier: 'false',
    };
  });

  afterAll(() => {
    if (work !== undefined) fs.rmSync(work, { recursive: true, force: true });
  });

  test('the prebuilt addon exports only the Node-API entry points', () => {
    const file = path.join(platformDir, prebuilds[0]);
    const exported = tool('nm', ['-D', '--defined-only', file])
      .split('\n')
      .map((line) => line.trim().split(/\s+/).pop())
      .filter((name): name is string => name !== undefined && name !== '')
      .sort();
    expect(exported).toEqual(['napi_register_module_v1', 'node_api_module_get_api_version_v1']);
  });

  test('the prebuilt addon is pinned in memory and needs no static TLS', () => {
    const dynamic = tool('readelf', ['-d', path.join(platformDir, prebuilds[0])]);
    expect(dynamic).toMatch(/FLAGS_1\)\s+Flags:.*NODELETE/);
    expect(dynamic).not.toMatch(/STATIC_TLS/);
  });

  test('the prebuilt addon needs no shared tcmalloc and keeps its own C++ memory on the process allocator', () => {
    const file = path.join(platformDir, prebuilds[0]);
    expect(tool('readelf', ['-d', file])).not.toMatch(/tcmalloc/);
    expect(tool('ldd', [file])).not.toMatch(/tcmalloc/);
    const imported = tool('nm', ['-D', '--undefined-only', file]);
    expect(imported).toMatch(/ malloc@/);
    expect(imported).toMatch(/ _Znwm@/);
  });

  test('npm pack puts the prebuilt addon in the tarball', () => {
    // dist/ is built before the tests run; prepack would only rebuild it.
    const output = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], {
      cwd: root,
      encoding: 'utf8',
    });
    const [packed] = JSON.parse(output) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const files = packed.files.map((entry) => entry.path);
    for (const name of prebuilds) {
      expect(files).toContain(`prebuilds/${process.platform}-${process.arch}/${name}`);
    }
    expect(files).toContain('dist/index.js');
    fs.renameSync(path.join(work, packed.filename), path.join(work, 'package.tgz'));
  });

  test('installs without a compiler', () => {
    const result = spawnSync(
      'npm',
      ['install', '--prefer-offline', '--no-save', path.join(work, 'package.tgz')],
      { cwd: project, env: restrictedEnv, encoding: 'utf8' },
    );
    if (result.status !== 0) throw new Error(`npm install failed:\n${result.stdout}\n${result.stderr}`);
    const installed = path.join(project, 'node_modules', 'mqtt-session-allocator');
    expect(fs.existsSync(path.join(installed, 'build'))).toBe(false);
  }, 180000);

  test('the installed package loads the prebuilt addon with bundled tcmalloc', () => {
    const result = spawnSync(process.execPath, ['-e', consumerScript], {
      cwd: project,
      env: restrictedEnv,
      encoding: 'utf8',
    });
    if (result.status !== 0) throw new Error(`node exited with ${result.status}:\n${result.stderr}`);
    const report = JSON.parse(result.stdout.trim().split('\n').pop() ?? '') as ConsumerReport;

    expect(report.addonFile).toMatch(new RegExp(`^prebuilds/${process.platform}-${process.arch}/`));
    expect(report.backend).toMatchObject({ name: 'tcmalloc', source: 'bundled' });
    expect(report.backend.version).toMatch(/\d+\.\d+/);
    expect(report.backend.fallbackReason).toBeUndefined();
    // Node's allocations do not reach tcmalloc; the package's do.
    expect(report.nodeDelta).toBe(0);
    expect(report.ownDelta).toBeGreaterThanOrEqual(16 * 16 * 1024);
    expect(report.usageAfterRelease).toBe(0);
  });
});
