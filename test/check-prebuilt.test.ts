// The check that `npm pack` and `npm publish` run first (prepack): a package
// without the prebuilt Linux x64 addon is packed only when asked for.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const SCRIPT = path.join(__dirname, '..', 'scripts', 'check-prebuilt.js');

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { SHIPPED } = require(SCRIPT) as { SHIPPED: string };

const tempDirs: string[] = [];
afterAll(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** Creates a package root with `files` in its prebuilds folder. */
function packageRoot(files: string[]): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mqsa-prepack-'));
  tempDirs.push(root);
  for (const file of files) {
    const target = path.join(root, SHIPPED, file);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, '');
  }
  return root;
}

function check(root: string, env: NodeJS.ProcessEnv = {}): { status: number | null; stderr: string } {
  const childEnv = { ...process.env, ...env };
  if (env.MQSA_PACK_WITHOUT_PREBUILD === undefined) delete childEnv.MQSA_PACK_WITHOUT_PREBUILD;
  const result = spawnSync(process.execPath, [SCRIPT, root], { encoding: 'utf8', env: childEnv });
  return { status: result.status, stderr: result.stderr };
}

test('passes with a prebuilt addon', () => {
  const { status, stderr } = check(packageRoot(['mqtt-session-allocator.glibc.node']));

  expect(status).toBe(0);
  expect(stderr).toBe('');
});

test.each<[string, string[]]>([
  ['no prebuilds folder', []],
  ['a folder without an addon', ['README.txt']],
])('stops with %s', (_name, files) => {
  const { status, stderr } = check(packageRoot(files));

  expect(status).toBe(1);
  expect(stderr).toContain(`${SHIPPED} has no prebuilt addon`);
  expect(stderr).toContain('npm run build:prebuilt');
});

test('packs the sources alone when asked', () => {
  const { status, stderr } = check(packageRoot([]), { MQSA_PACK_WITHOUT_PREBUILD: '1' });

  expect(status).toBe(0);
  expect(stderr).toContain('every install will build the addon from source');
});

test('npm pack runs the check first', () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { scripts: Record<string, string> };

  expect(manifest.scripts.prepack.startsWith('node scripts/check-prebuilt.js && ')).toBe(true);
});
