// The staleness check that `npm start` runs first: the addon is rebuilt only
// when it is missing or a file it is built from is newer than it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { ADDON, INPUTS, isStale } = require('../scripts/build-addon-if-stale.js') as {
  ADDON: string;
  INPUTS: string[];
  isStale: (root: string) => boolean;
};

/** Creates a package layout with one source file and an addon, with the given times in seconds. */
function layout(sourceTime: number, addonTime: number | undefined): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mqsa-stale-'));
  for (const input of INPUTS) {
    const target = path.join(dir, input);
    if (path.extname(input) === '') fs.mkdirSync(target, { recursive: true });
    else fs.writeFileSync(target, '');
    fs.utimesSync(target, 1000, 1000);
  }
  const source = path.join(dir, 'native', 'core', 'allocator.cc');
  fs.writeFileSync(source, '');
  fs.utimesSync(source, sourceTime, sourceTime);
  fs.utimesSync(path.dirname(source), 1000, 1000);
  if (addonTime !== undefined) {
    const addon = path.join(dir, ADDON);
    fs.mkdirSync(path.dirname(addon), { recursive: true });
    fs.writeFileSync(addon, '');
    fs.utimesSync(addon, addonTime, addonTime);
  }
  return dir;
}

const tempDirs: string[] = [];
afterAll(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function staleFor(sourceTime: number, addonTime: number | undefined): boolean {
  const dir = layout(sourceTime, addonTime);
  tempDirs.push(dir);
  return isStale(dir);
}

describe('addon staleness', () => {
  test('missing addon is stale', () => {
    expect(staleFor(2000, undefined)).toBe(true);
  });

  test('addon older than a source is stale', () => {
    expect(staleFor(3000, 2000)).toBe(true);
  });

  test('addon newer than every source is current', () => {
    expect(staleFor(2000, 3000)).toBe(false);
  });
});
