#!/usr/bin/env bash
# yamllint, strict, over every manifest with the repository's rules (tools/k8s/.yamllint.yaml).
set -euo pipefail
k8s="$TEST_SRCDIR/marmot/tools/k8s"
command -v yamllint >/dev/null || { echo "FAIL: yamllint is missing; run tools/dev setup" >&2; exit 1; }
yamllint --strict -c "$k8s/.yamllint.yaml" "$k8s"/*.yaml
echo "yamllint: $(ls "$k8s"/*.yaml | wc -l) files clean"
