// The cmake-js build and the node-gyp build compile the same sources, and
// npm start's staleness check watches all of them.
import fs from 'node:fs';
import path from 'node:path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { INPUTS: STALE_INPUTS } = require('../scripts/build-addon-if-stale.js') as { INPUTS: string[] };

const root = path.join(__dirname, '..');

/** Reads the files of a `set(NAME ...)` list in CMakeLists.txt. */
function cmakeList(text: string, name: string): string[] {
  const match = new RegExp(`set\\(\\s*${name}\\s+([^)]*)\\)`).exec(text);
  if (match === null) throw new Error(`CMakeLists.txt has no set(${name} ...)`);
  return match[1]
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .flatMap((line) => line.split(/\s+/))
    .filter((entry) => entry !== '');
}

/** Reads the sources of the addon target in binding.gyp (JSON with # comments). */
function gypSources(text: string): string[] {
  const json = text.replace(/^\s*#.*$/gm, '');
  const parsed = JSON.parse(json) as { targets: Array<{ target_name: string; sources?: string[] }> };
  const target = parsed.targets.find((entry) => entry.target_name === 'mqtt_session_allocator');
  if (target?.sources === undefined) throw new Error('binding.gyp has no sources for mqtt_session_allocator');
  return target.sources;
}

const cmakeText = fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8');
const gypText = fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8');
const cmakeSources = [...cmakeList(cmakeText, 'MQSA_CORE_SOURCES'), ...cmakeList(cmakeText, 'MQSA_BINDING_SOURCES')];
const gypList = gypSources(gypText);

describe('build sources', () => {
  test('CMakeLists.txt lists core sources', () => {
    expect(cmakeList(cmakeText, 'MQSA_CORE_SOURCES').length).toBeGreaterThan(0);
  });

  test('CMakeLists.txt lists binding sources', () => {
    expect(cmakeList(cmakeText, 'MQSA_BINDING_SOURCES').length).toBeGreaterThan(0);
  });

  test('binding.gyp lists the same sources as CMakeLists.txt', () => {
    expect([...gypList].sort()).toEqual([...cmakeSources].sort());
  });

  test('binding.gyp lists no source twice', () => {
    expect(new Set(gypList).size).toBe(gypList.length);
  });

  test('CMakeLists.txt lists no source twice', () => {
    expect(new Set(cmakeSources).size).toBe(cmakeSources.length);
  });

  test('every listed source exists', () => {
    expect(cmakeSources.filter((file) => !fs.existsSync(path.join(root, file)))).toEqual([]);
  });

  test('every .cc file of native/core and native/binding is listed', () => {
    const onDisk = ['native/core', 'native/binding'].flatMap((dir) =>
      fs
        .readdirSync(path.join(root, dir))
        .filter((file) => file.endsWith('.cc'))
        .map((file) => `${dir}/${file}`),
    );
    expect(onDisk.filter((file) => !cmakeSources.includes(file))).toEqual([]);
  });

  test('npm start watches every listed source', () => {
    const uncovered = gypList.filter((source) => !STALE_INPUTS.some((input) => source.startsWith(`${input}/`)));
    expect(uncovered).toEqual([]);
  });
});
