#!/usr/bin/env bash
# Builds the prebuilt addon shipped in the npm package:
# prebuilds/<platform>-<arch>/mqtt-session-allocator.<libc>.node, with tcmalloc
# linked in
# (scripts/build-tcmalloc.sh makes the archive when it is missing).
#
# prebuildify runs `node-gyp rebuild`, which deletes build/ first. It runs
# here in a copy of the sources under build-prebuild/, so a local build in
# build/Release and build/cmake stays.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
stage="$root/build-prebuild/stage"
start=$SECONDS

archive="$(bash "$root/scripts/build-tcmalloc.sh")"
export MQSA_TCMALLOC_STATIC_LIB="$archive"

rm -rf "$stage"
mkdir -p "$stage"
cp -R "$root/binding.gyp" "$root/package.json" "$root/native" "$stage/"

# Outside `npm run`, neither node-gyp nor npm's nodedir setting is in the
# environment: take npm's own node-gyp and its nodedir, if one is set.
if [ -z "${PREBUILD_NODE_GYP:-}" ] && ! command -v node-gyp >/dev/null; then
  npm_dir="$(dirname "$(readlink -f "$(command -v npm)")")/.."
  export PREBUILD_NODE_GYP="$npm_dir/node_modules/node-gyp/bin/node-gyp.js"
fi
if [ -z "${npm_config_nodedir:-}" ]; then
  nodedir="$(npm config get nodedir 2>/dev/null || true)"
  if [ -n "$nodedir" ] && [ "$nodedir" != "undefined" ] && [ "$nodedir" != "null" ]; then
    export npm_config_nodedir="$nodedir"
  fi
fi

# node-gyp compiles one file at a time unless JOBS is set.
export JOBS="${JOBS:-2}"

rm -rf "$root/prebuilds/$(node -p 'process.platform + "-" + process.arch')"
"$root/node_modules/.bin/prebuildify" --napi --strip --tag-libc \
  --cwd "$stage" --out "$root"

echo "prebuild: built in $((SECONDS - start)) s:" >&2
find "$root/prebuilds" -name '*.node' -newer "$stage/binding.gyp" >&2
