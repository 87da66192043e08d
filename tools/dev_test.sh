#!/usr/bin/env bash
# Checks the path CI takes: .ci/run calls `tools/dev test`, the README shows the two commands,
# and the "N passed, N failed" line tools/dev prints is computed from real results.
set -euo pipefail
root="$TEST_SRCDIR/marmot"
fail() { echo "FAIL: $*" >&2; exit 1; }

grep -q 'tools/dev test' "$root/.ci/run" || fail ".ci/run does not call tools/dev test"
grep -q 'tools/dev test' "$root/README.md" || fail "README.md does not show tools/dev test"
grep -q 'tools/dev demo' "$root/README.md" || fail "README.md does not show tools/dev demo"
# What users build (README, demo, Dockerfile, image) is optimized: it takes .bazelrc's default.
grep -qx 'build -c opt' "$root/.bazelrc" || fail ".bazelrc does not make builds optimized"
grep -q '^build:dev ' "$root/.bazelrc" || fail ".bazelrc has no --config=dev"
! grep -E 'bazel build.*(fastbuild|--config=(dev|debug))' "$root/Dockerfile" "$root/tools/dev" ||
  fail "a build users run is not optimized"

dir="$TEST_TMPDIR/summary"
mkdir -p "$dir"
cat >"$dir/ok.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="3" failures="0" disabled="0" errors="0" name="AllTests">
  <testsuite name="A" tests="2" failures="0" disabled="0" skipped="0" errors="0">
  </testsuite>
  <testsuite name="B" tests="1" failures="0" disabled="0" skipped="0" errors="0">
  </testsuite>
</testsuites>
XML
cat >"$dir/one_bad.xml" <<'XML'
<testsuites tests="2" failures="1" disabled="0" errors="0" name="AllTests">
  <testsuite name="C" tests="2" failures="1" disabled="0" skipped="0" errors="0">
  </testsuite>
</testsuites>
XML
cat >"$dir/crashed.xml" <<'XML'
<testsuites><testsuite name="crashed" tests="1" failures="0" errors="0"></testsuite></testsuites>
XML

# All passing.
out="$(printf 'PASSED %s\n' "$dir/ok.xml" | "$root/tools/dev" summarize)" || fail "passing run exited non-zero"
[ "$out" = "3 passed, 0 failed" ] || fail "passing run printed '$out'"

# A failing case, a crash whose XML shows no failure, and a target that did not build (its stale
# XML must not count as passes).
set +e
out="$(printf 'PASSED %s\nFAILED %s\nTIMEOUT %s\nFAILED_TO_BUILD %s\n' \
  "$dir/ok.xml" "$dir/one_bad.xml" "$dir/crashed.xml" "$dir/ok.xml" | "$root/tools/dev" summarize)"
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "failing run exited 0"
[ "$out" = "4 passed, 3 failed" ] || fail "failing run printed '$out'"

# A sharded target (its XMLs in shard_*_of_*/, some shards cached: bazel prints "(1/2 cached)
# PASSED") and a passed target whose XML is not here count their cases and one case.
mkdir -p "$dir/sharded/shard_1_of_2" "$dir/sharded/shard_2_of_2"
cp "$dir/ok.xml" "$dir/sharded/shard_1_of_2/test.xml"
cp "$dir/one_bad.xml" "$dir/sharded/shard_2_of_2/test.xml"
out="$(printf '(1/2_cached)_PASSED %s\nPASSED %s\n' "$dir/sharded/test.xml" "$dir/none/test.xml" |
  "$root/tools/dev" summarize)" || true
[ "$out" = "5 passed, 1 failed" ] || fail "sharded run printed '$out'"
# The per-run folders an earlier --runs_per_test left beside them are not this run's.
mkdir -p "$dir/sharded/shard_1_of_2_run_1_of_3"
cp "$dir/one_bad.xml" "$dir/sharded/shard_1_of_2_run_1_of_3/test.xml"
out="$(printf '(1/2_cached)_PASSED %s
PASSED %s
' "$dir/sharded/test.xml" "$dir/none/test.xml" |
  "$root/tools/dev" summarize)" || true
[ "$out" = "5 passed, 1 failed" ] || fail "sharded run with old per-run folders printed '$out'"
out="$(printf '(1/2_cached)_PASSED %s\n' "$dir/ok.xml" | "$root/tools/dev" summarize)" ||
  fail "a partly cached passing target exited non-zero"
[ "$out" = "3 passed, 0 failed" ] || fail "partly cached run printed '$out'"

# No test at all is not a pass.
set +e
out="$(printf '' | "$root/tools/dev" summarize)"
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "empty run exited 0"
echo "dev_test: ok"
