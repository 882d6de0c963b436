// Builds the addon with cmake-js unless build/Release already has one that
// is newer than every file it is built from. `npm install` builds the same
// addon with node-gyp, so the first `npm start` after it need not build it
// again, while an edit to the native sources still leads to a rebuild.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ADDON = path.join('build', 'Release', 'mqtt_session_allocator.node');
// The addon's sources and build files, relative to the package root.
// native/test holds only the native test programs, which the addon does not
// contain.
const INPUTS = ['native/core', 'native/binding', 'CMakeLists.txt', 'binding.gyp'];

/** Returns the newest modification time among `entry` and the files under it, in ms. */
function newestTime(entry) {
  const stats = fs.statSync(entry);
  if (!stats.isDirectory()) return stats.mtimeMs;
  let newest = stats.mtimeMs;
  for (const name of fs.readdirSync(entry)) newest = Math.max(newest, newestTime(path.join(entry, name)));
  return newest;
}

/** Returns true when the addon under `root` is missing or older than any of its inputs. */
function isStale(root) {
  let built;
  try {
    built = fs.statSync(path.join(root, ADDON)).mtimeMs;
  } catch {
    return true;
  }
  return INPUTS.some((input) => newestTime(path.join(root, input)) > built);
}

function main() {
  const root = path.join(__dirname, '..');
  if (!isStale(root)) {
    console.log(`The addon ${ADDON} is newer than its sources; not rebuilding it.`);
    return;
  }
  console.log(`The addon ${ADDON} is missing or older than its sources; building it.`);
  const result = spawnSync('npm', ['run', 'build:addon'], { cwd: root, stdio: 'inherit' });
  if (result.error !== undefined) throw result.error;
  process.exitCode = result.status ?? 1;
}

module.exports = { ADDON, INPUTS, isStale };
if (require.main === module) main();
