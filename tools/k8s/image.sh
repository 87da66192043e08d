#!/usr/bin/env bash
# Builds marmot's container image without a Docker engine: one layer holding the binary, every
# shared library `ldd` names (at the path the loader looks for it), a passwd entry for the
# unprivileged user the manifests run as, and the data folder. Also wraps that layer as a
# `docker load` archive and writes the image reference.
#
#   image.sh <marmot binary> <layer.tar> <image.tar> <image reference file>
#
# Files are added in name order with fixed times and owners, so the same inputs give the same
# bytes and the same image reference.
set -euo pipefail

marmot="$1"
layer="$2"
image="$3"
ref_file="$4"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
stage="$root/fs"
mkdir -p "$stage/usr/local/bin" "$stage/etc" "$stage/tmp" "$stage/var/lib/marmot"
chmod 1777 "$stage/tmp"
install -m 0755 "$marmot" "$stage/usr/local/bin/marmot"

# Every library the binary loads, and the loader itself, copied with symlinks followed.
libs="$(ldd "$marmot" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')"
if [ -z "$libs" ] || ldd "$marmot" | grep -q "not found"; then
  echo "image.sh: ldd cannot resolve the libraries of $marmot:" >&2
  ldd "$marmot" >&2
  exit 1
fi
for lib in $libs; do
  mkdir -p "$stage$(dirname "$lib")"
  cp -L "$lib" "$stage$lib"
done

cat >"$stage/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/usr/sbin/nologin
marmot:x:10001:10001:marmot:/var/lib/marmot:/usr/sbin/nologin
PASSWD
cat >"$stage/etc/group" <<'GROUP'
root:x:0:
marmot:x:10001:
GROUP
echo "hosts: files dns" >"$stage/etc/nsswitch.conf"

deterministic=(--format=gnu --sort=name --mtime=@0 --numeric-owner)
(cd "$stage" && tar -cf "$root/layer.tar" "${deterministic[@]}" --owner=0 --group=0 \
  --exclude=./var/lib/marmot .)
(cd "$stage" && tar -rf "$root/layer.tar" "${deterministic[@]}" --owner=10001 --group=10001 \
  --no-recursion ./var/lib/marmot)
cp "$root/layer.tar" "$layer"

# The docker archive format (`docker save`): manifest.json, the image config, the layer.
layer_sha="$(sha256sum "$root/layer.tar" | cut -d' ' -f1)"
mkdir -p "$root/archive/$layer_sha"
mv "$root/layer.tar" "$root/archive/$layer_sha/layer.tar"
cat >"$root/config.json" <<CONFIG
{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z",\
"config":{"User":"10001:10001","Entrypoint":["/usr/local/bin/marmot"],\
"Env":["PATH=/usr/local/bin"],"WorkingDir":"/var/lib/marmot",\
"ExposedPorts":{"8610/tcp":{},"6010/tcp":{}},\
"Volumes":{"/var/lib/marmot":{}}},\
"rootfs":{"type":"layers","diff_ids":["sha256:$layer_sha"]},\
"history":[{"created":"1970-01-01T00:00:00Z","created_by":"bazel build //tools/k8s:image"}]}
CONFIG
config_sha="$(sha256sum "$root/config.json" | cut -d' ' -f1)"
mv "$root/config.json" "$root/archive/$config_sha.json"
reference="marmot:${config_sha:0:12}"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]\n' \
  "$config_sha" "$reference" "$layer_sha" >"$root/archive/manifest.json"
(cd "$root/archive" && tar -cf "$root/image.tar" "${deterministic[@]}" --owner=0 --group=0 \
  manifest.json "$config_sha.json" "$layer_sha")
cp "$root/image.tar" "$image"
echo "$reference" >"$ref_file"
