#!/usr/bin/env bash
# Prints marmot's Kubernetes manifests (tools/k8s, in kustomization order) with the image Bazel
# built, ready for `kubectl apply -f -`.
#
#   bazel run //tools/k8s:manifests                          print them
#   bazel run //tools/k8s:manifests -- --image REGISTRY/marmot:TAG   print them with another image
#   bazel run //tools/k8s:manifests -- --apply [--image ...]  apply them with kubectl
#
# The built image is bazel-bin/tools/k8s/marmot-image.tar: `docker load -i` it (or
# `kind load image-archive` it), then tag and push it where the cluster pulls from.
set -euo pipefail

here="$(dirname "${BASH_SOURCE[0]}")"
if [ -n "${RUNFILES_DIR:-}" ] && [ -d "$RUNFILES_DIR/marmot/tools/k8s" ]; then
  k8s="$RUNFILES_DIR/marmot/tools/k8s"
elif [ -d "$0.runfiles/marmot/tools/k8s" ]; then
  k8s="$0.runfiles/marmot/tools/k8s"
else
  k8s="$here"
fi

image="$(cat "$k8s/marmot-image.ref")"
apply=false
while [ $# -gt 0 ]; do
  case "$1" in
    --apply) apply=true; shift ;;
    --image) image="$2"; shift 2 ;;
    --image=*) image="${1#*=}"; shift ;;
    *) echo "manifests: unknown option $1 (--apply, --image REF)" >&2; exit 2 ;;
  esac
done

render() {
  local first=true f
  # The resources of kustomization.yaml, in its order.
  for f in $(sed -n 's/^  - \(.*\.yaml\)$/\1/p' "$k8s/kustomization.yaml"); do
    $first || echo "---"
    first=false
    sed -E "s|^( +image: )marmot\$|\1$image|" "$k8s/$f"
  done
}

if $apply; then
  if ! command -v kubectl >/dev/null; then
    echo "manifests: --apply needs kubectl on PATH" >&2
    exit 1
  fi
  echo "manifests: applying with image $image" >&2
  render | kubectl apply -f -
else
  render
fi
