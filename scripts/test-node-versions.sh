#!/usr/bin/env bash
# Runs the jest suites (without the property tests) against the prebuilt
# binary on each Node.js release line in MQSA_TEST_NODE_VERSIONS (default
# "22 24"), besides the Node that runs npm test. Each Node comes from the npm
# registry's node-<platform>-<arch> package, installed once under
# build/node-versions.
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -a versions <<<"${MQSA_TEST_NODE_VERSIONS:-22 24}"
platform="$(node -p 'process.platform + "-" + process.arch')"

for major in "${versions[@]}"; do
  prefix="build/node-versions/$major"
  node_bin="$prefix/node_modules/node-$platform/bin/node"
  if [ ! -x "$node_bin" ]; then
    echo "Installing Node.js $major (node-$platform@$major) under $prefix"
    npm install --prefix "$prefix" --no-save --no-package-lock --no-audit --no-fund --loglevel=error "node-$platform@$major"
  fi

  echo "jest suites on Node.js $("$node_bin" --version)"
  # The suites start child processes with process.execPath, so they run on
  # this Node too.
  MQSA_REQUIRE_PREBUILD=1 "$node_bin" --expose-gc node_modules/jest/bin/jest.js --runInBand \
    --testPathIgnorePatterns /test/property/
done
