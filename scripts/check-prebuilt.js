// Runs before `npm pack` and `npm publish` (prepack). It stops them when
// prebuilds/ lacks the Linux x64 addon that the package promises, since a
// package without it needs a compiler on every install. With
// MQSA_PACK_WITHOUT_PREBUILD=1 the sources are packed alone, for machines
// that build the addon anyway.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const SHIPPED = path.join('prebuilds', 'linux-x64');

/** Returns the names of the prebuilt addons under `root`'s SHIPPED folder. */
function prebuiltAddons(root) {
  try {
    return fs.readdirSync(path.join(root, SHIPPED)).filter((name) => name.endsWith('.node'));
  } catch {
    return [];
  }
}

function main() {
  const root = process.argv[2] ?? path.join(__dirname, '..');
  if (prebuiltAddons(root).length > 0) return;
  if (process.env.MQSA_PACK_WITHOUT_PREBUILD === '1') {
    console.warn(`Packing without a prebuilt addon in ${SHIPPED}: every install will build the addon from source.`);
    return;
  }
  console.error(
    `${SHIPPED} has no prebuilt addon, so installing this package would need a compiler. ` +
      'Run `npm run build:prebuilt` first, or set MQSA_PACK_WITHOUT_PREBUILD=1 to pack the sources alone.',
  );
  process.exitCode = 1;
}

module.exports = { SHIPPED, prebuiltAddons };
if (require.main === module) main();
