#!/usr/bin/env bash
# Builds the position-independent static libtcmalloc_minimal that the
# prebuilt addon links (Debian's libtcmalloc_minimal.a is not PIC, so it
# cannot go into a shared object). The source is Debian's google-perftools
# source package; nothing of it enters the repository.
#
# Prints the path of the archive on stdout (progress goes to stderr) and does
# nothing when the archive is already there. MQSA_GPERFTOOLS_DIR moves the
# cache; its default, build-gperftools/, is outside build/ because
# `node-gyp rebuild` deletes build/.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${MQSA_GPERFTOOLS_DIR:-$root/build-gperftools}"
prefix="$cache/prefix"
archive="$prefix/lib/libtcmalloc_minimal.a"
jobs="${MQSA_BUILD_JOBS:-2}"

log() { echo "build-tcmalloc: $*" >&2; }

if [ -f "$archive" ]; then
  echo "$archive"
  exit 0
fi

# Runs a command as root: directly, or through sudo when that works without
# a password. Adding a source entry and installing dpkg-dev need it.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    log "needs root for: $*"
    exit 1
  fi
}

has_deb_src() {
  grep -qsE '^[[:space:]]*(Types:.*deb-src|deb-src[[:space:]])' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources
}

# The deb-src entry mirrors the existing deb entries, in the same format.
add_deb_src() {
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources |
      as_root tee /etc/apt/sources.list.d/debian-src.sources >/dev/null
  elif [ -f /etc/apt/sources.list ]; then
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list |
      as_root tee /etc/apt/sources.list.d/debian-src.list >/dev/null
  else
    log "no Debian source entries found under /etc/apt"
    exit 1
  fi
}

fetch_source() {
  if ! has_deb_src; then
    log "adding a deb-src entry"
    add_deb_src
    as_root apt-get update >&2
  elif [ -z "$(apt-cache showsrc google-perftools 2>/dev/null)" ]; then
    as_root apt-get update >&2
  fi
  if ! command -v dpkg-source >/dev/null; then
    log "installing dpkg-dev"
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y --no-install-recommends dpkg-dev >&2
  fi
  (cd "$cache" && apt-get source google-perftools >&2)
}

start=$SECONDS
mkdir -p "$cache"
source_dir="$(find "$cache" -maxdepth 1 -type d -name 'google-perftools-*' | sort | tail -1)"
if [ -z "$source_dir" ] || [ ! -x "$source_dir/configure" ]; then
  log "fetching Debian's google-perftools source package into $cache"
  fetch_source
  source_dir="$(find "$cache" -maxdepth 1 -type d -name 'google-perftools-*' | sort | tail -1)"
fi
log "source: $source_dir"

# Three changes to the unpacked source, each idempotent:
# - the static target of gperftools 2.10's CMake build leaves out tcmalloc.cc;
# - tcmalloc.cc does not define malloc, free, operator new and the other libc
#   names. Inside the addon those definitions would take the addon's own
#   C++ allocations (std::string, the registry), which libstdc++ may then
#   free with glibc's free, or the reverse. Without them every such call goes
#   to the process allocator, as it does when the shared tcmalloc is opened
#   with RTLD_LOCAL, and only explicit tc_* calls reach tcmalloc;
# - thread-local data uses the general-dynamic TLS model instead of
#   initial-exec. An initial-exec variable in a dlopen()ed object needs room
#   in glibc's fixed static TLS surplus, and when that is used up dlopen()
#   fails with "cannot allocate memory in static TLS block", before any of
#   our code runs. tcmalloc uses initial-exec so that __tls_get_addr, which
#   may call malloc, never re-enters tcmalloc; here that malloc is glibc's.
patch_source() {
  sed -i 's/add_library(tcmalloc_minimal_static STATIC ${libtcmalloc_minimal_internal_la_SOURCES})/add_library(tcmalloc_minimal_static STATIC ${TCMALLOC_CC})/' \
    "$source_dir/CMakeLists.txt"
  grep -q 'add_library(tcmalloc_minimal_static STATIC ${TCMALLOC_CC})' "$source_dir/CMakeLists.txt"

  sed -i 's/^#include "libc_override.h"$/static void ReplaceSystemAlloc() {}/' "$source_dir/src/tcmalloc.cc"
  grep -q '^static void ReplaceSystemAlloc() {}$' "$source_dir/src/tcmalloc.cc"

  sed -i 's/^#define ATTR_INITIAL_EXEC __attribute__ ((tls_model ("initial-exec")))$/#define ATTR_INITIAL_EXEC/' \
    "$source_dir/src/base/basictypes.h"
  ! grep -q 'tls_model ("initial-exec")' "$source_dir/src/base/basictypes.h"
}

log "patching and building libtcmalloc_minimal.a (position-independent)"
patch_source
build_dir="$cache/cmake-build"
cmake -S "$source_dir" -B "$build_dir" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
  -Dgperftools_build_minimal=ON \
  -DGPERFTOOLS_BUILD_STATIC=ON \
  -Dgperftools_build_benchmark=OFF \
  -Dgperftools_enable_libunwind=OFF \
  -DBUILD_TESTING=OFF >&2
cmake --build "$build_dir" --target tcmalloc_minimal_static -j "$jobs" >&2

# Installs by hand: `cmake --install` would build every target first.
staging="$prefix.tmp"
rm -rf "$staging"
mkdir -p "$staging/lib"
# The static target leaves its helper libraries (spin locks, logging, system
# information) out of the archive; one archive is simpler to link.
{
  echo "CREATE $staging/lib/libtcmalloc_minimal.a"
  for lib in tcmalloc_minimal spinlock logging sysinfo maybe_threads; do
    echo "ADDLIB $build_dir/lib$lib.a"
  done
  echo "SAVE"
  echo "END"
} | ar -M
# malloc_hook.cc wraps mmap, mmap64, mremap and munmap to run its hooks.
# Local symbols keep the addon's own calls, if any, on glibc's.
objcopy --localize-symbol=mmap --localize-symbol=mmap64 \
  --localize-symbol=mremap --localize-symbol=munmap \
  "$staging/lib/libtcmalloc_minimal.a"
install -D -m 644 -t "$staging/include/gperftools" \
  "$source_dir"/src/gperftools/*.h "$build_dir/gperftools/tcmalloc.h"
version="$(sed -n 's/^#define TC_VERSION_STRING "gperftools \(.*\)"$/\1/p' "$build_dir/gperftools/tcmalloc.h")"
echo "${version:-unknown}" >"$staging/VERSION"
rm -rf "$prefix"
mv "$staging" "$prefix"
log "built $archive (gperftools ${version:-unknown}) in $((SECONDS - start)) s"
echo "$archive"
