#!/usr/bin/env bash
# Runs one test under ThreadSanitizer (.bazelrc: --config=tsan runs every test through this).
#
# The test and every marmot process it starts load the Abseil that tools/tsan/build_abseil.sh
# built with its TSan annotations (MARMOT_TSAN_ABSEIL names its folder) in place of Debian's, and
# write their reports into one folder. A test fails if any of its processes reported anything,
# even a child that the test killed or whose exit status it does not check; the reports are
# printed into the test's log.
set -uo pipefail

fail() { echo "tsan test_wrapper: $*" >&2; exit 1; }

libs="${MARMOT_TSAN_ABSEIL:-}"
[ -n "$libs" ] && [ -f "$libs/libabsl_synchronization.so.20220623" ] ||
  fail "MARMOT_TSAN_ABSEIL='$libs' holds no Abseil built for TSan: run \`tools/dev test" \
    "--config=tsan\`, or export MARMOT_TSAN_ABSEIL=\"\$(tools/tsan/build_abseil.sh)\" first"

suppressions=""
for candidate in "${BASH_SOURCE[0]}.runfiles/marmot/tools/tsan/suppressions.txt" \
  "${TEST_SRCDIR:-/nonexistent}/marmot/tools/tsan/suppressions.txt"; do
  if [ -f "$candidate" ]; then
    suppressions="$(cd "$(dirname "$candidate")" && pwd)/suppressions.txt"
    break
  fi
done
[ -n "$suppressions" ] || fail "cannot find tools/tsan/suppressions.txt in the runfiles"

reports="$(mktemp -d "${TEST_TMPDIR:-/tmp}/tsan-reports.XXXXXX")"
# The suppressions, and called_from_lib for each Abseil library (suppressions.txt says why).
{
  cat "$suppressions"
  for lib in "$libs"/libabsl_*.so.*; do echo "called_from_lib:/${lib##*/}"; done
} >"$reports/suppressions.txt"
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# halt_on_error: a process stops at its first report (what follows a race is undefined).
# second_deadlock_stack: lock-order reports show both acquisitions.
# report_thread_leaks=0: marmot's threads are std::threads, whose destructor aborts the process
# if they were not joined, so a "leaked" thread can only be one still owned when a process ends
# on purpose with _exit (a full disk, a duplicate node: raft/host/storage_failure.cc), which TSan
# would report and turn into its own exit code.
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:report_thread_leaks=0:history_size=4:log_path=$reports/tsan:suppressions=$reports/suppressions.txt${TSAN_OPTIONS:+:$TSAN_OPTIONS}"

"$@"
status=$?

shopt -s nullglob
files=("$reports"/tsan.*)
if [ "${#files[@]}" -gt 0 ]; then
  for f in "${files[@]}"; do
    echo "=== ThreadSanitizer report of process ${f##*.} ===" >&2
    cat "$f" >&2
  done
  echo "tsan test_wrapper: ${#files[@]} process(es) reported" >&2
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
