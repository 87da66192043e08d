#!/usr/bin/env bash
# Builds Debian's Abseil with its ThreadSanitizer annotations and prints the folder holding its
# shared libraries.
#
# Debian's libabsl20220623 is built without them, so TSan cannot see absl::Mutex and
# absl::CondVar as locks: not in marmot's code, and not inside gRPC, whose gpr_mu and gpr_cv are
# built on them; every hand-off between gRPC's threads and marmot's would be reported as a race.
# This script fetches the very source package Debian built libabsl20220623 from (upstream tarball
# plus Debian's patches, both checked against the hashes of its .dsc), builds it the way
# debian/rules does (shared, C++17, -O2, the same SONAMEs and inline namespace) with
# __SANITIZE_THREAD__ defined, and keeps the result under ~/.cache/marmot-tsan. That turns on
# Abseil's TSan annotations (its locks tell TSan when they are taken and released) without
# instrumenting Abseil's own loads and stores: Abseil stays as invisible as every other Debian
# library (tools/tsan/suppressions.txt says why that matters). With that folder first on
# LD_LIBRARY_PATH, marmot and Debian's gRPC load this Abseil instead of Debian's. Its headers are
# the files of /usr/include/absl (checked below), so the ABI is Debian's.
#
# Used by `tools/dev test --config=tsan`; later runs only print the folder.
set -euo pipefail

readonly UPSTREAM=20220623.1
readonly DEBIAN_VERSION="$UPSTREAM-1+deb12u2"
readonly POOL=http://deb.debian.org/debian/pool/main/a/abseil
readonly ORIG="abseil_$UPSTREAM.orig.tar.gz"
readonly ORIG_SHA256=abfe2897f3a30edaa74bc34365afe3c2a3cd012091a97dc7e008f7016adcd5fe
readonly PATCHES="abseil_$DEBIAN_VERSION.debian.tar.xz"
readonly PATCHES_SHA256=e08490fc7b6f3beca1925953b0c4fb92df2de5e2a01295e4641e2a3d4e528eeb

cache="${XDG_CACHE_HOME:-$HOME/.cache}/marmot-tsan"
out="$cache/abseil-$DEBIAN_VERSION-annotated"
log() { printf 'build_abseil: %s\n' "$*" >&2; }

# These libraries replace the installed ones at run time: they must be built from the
# same Debian version, or the headers marmot and gRPC were compiled with may not match them.
installed="$(dpkg-query -W -f='${Version}' libabsl20220623 2>/dev/null || true)"
if [ "$installed" != "$DEBIAN_VERSION" ]; then
  log "libabsl20220623 $DEBIAN_VERSION expected, found '${installed:-none}':" \
    "update the version and hashes in $0 (from the package's .dsc)"
  exit 1
fi

if [ -f "$out/done" ]; then
  echo "$out/lib"
  exit 0
fi

for tool in curl cmake ninja g++ patch sha256sum; do
  command -v "$tool" >/dev/null || { log "needs $tool (tools/dev setup installs it)"; exit 1; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/marmot-tsan-abseil.XXXXXX")"
trap 'rm -rf "$work"' EXIT
fetch() {  # name sha256
  log "fetching $POOL/$1"
  curl -fsSL --retry 3 -o "$work/$1" "$POOL/$1"
  echo "$2  $work/$1" | sha256sum --check --quiet - ||
    { log "$1 does not have the sha256 of Debian's .dsc"; exit 1; }
}
fetch "$ORIG" "$ORIG_SHA256"
fetch "$PATCHES" "$PATCHES_SHA256"

src="$work/abseil-$UPSTREAM"
tar -C "$work" -xzf "$work/$ORIG"
tar -C "$src" -xJf "$work/$PATCHES"
while read -r p; do
  case "$p" in ''|'#'*) continue ;; esac
  patch -d "$src" -p1 --quiet <"$src/debian/patches/$p"
done <"$src/debian/patches/series"

# Every header marmot and gRPC were compiled with must be the one built here.
while IFS= read -r -d '' h; do
  cmp -s "$h" "/usr/include/${h#"$src/"}" ||
    { log "${h#"$src/"} differs from /usr/include: not the installed Abseil"; exit 1; }
done < <(find "$src/absl" -name '*.h' -not -name '*_test*' -not -path '*/testing/*' \
  -not -name '*mock*' -print0)

# As debian/rules' shared build (C++17, BUILD_SHARED_LIBS, -O2), with Abseil's ThreadSanitizer
# annotations but without instrumenting its memory accesses (see above).
log "building Abseil with its ThreadSanitizer annotations into $out (a few minutes)"
cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=None \
  -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON -DCMAKE_INSTALL_PREFIX="$work/install" \
  -DCMAKE_INSTALL_LIBDIR=lib \
  -DCMAKE_CXX_FLAGS="-O2 -g -D__SANITIZE_THREAD__=1" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" >"$work/cmake.log" 2>&1 ||
  { cat "$work/cmake.log" >&2; exit 1; }
ninja -C "$work/build" install >"$work/build.log" 2>&1 || { tail -50 "$work/build.log" >&2; exit 1; }

# The same files and SONAMEs as Debian's package, nothing else.
rm -rf "$out"
mkdir -p "$out/lib"
count=0
for lib in /usr/lib/x86_64-linux-gnu/libabsl_*.so.20220623; do
  name="$(basename "$lib")"
  [ -f "$work/install/lib/$name" ] || { log "the build made no $name"; exit 1; }
  cp -L "$work/install/lib/$name" "$out/lib/$name"
  count=$((count + 1))
done
touch "$out/done"
log "$count libraries in $out/lib"
echo "$out/lib"
