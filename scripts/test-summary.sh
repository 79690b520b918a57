#!/usr/bin/env bash
# The end of `make test`: the tests that were skipped, read from what the test groups printed,
# and one closing line of counts. Exits with the status of the test groups.
#
#   test-summary.sh LOG STATUS
#
# Skips are the lines `SKIPPED <test>: <why>` of the Rust tests (ls_tests::skip writes them past
# the test harness's capture) and pytest's `-rs` lines `SKIPPED [n] <file>:<line>: <why>`.
# Under LS_REQUIRE_FIXTURES=1 (CI) a missing fixture, tool or service is a failure instead, so
# this list holds only what may legitimately be skipped there.
set -uo pipefail
log=${1:?usage: test-summary.sh LOG STATUS}
status=${2:?usage: test-summary.sh LOG STATUS}

skips=$(grep -o 'SKIPPED .*' "$log" | sort | uniq)
echo
if [ -n "$skips" ]; then
  if [ "${LS_REQUIRE_FIXTURES:-}" = 1 ]; then
    echo "make test: skipped for other reasons than a missing fixture, tool or service (which fail under LS_REQUIRE_FIXTURES=1):"
  else
    echo "make test: skipped (set LS_REQUIRE_FIXTURES=1 to make a missing fixture, tool or service a failure):"
  fi
  printf '%s\n' "$skips" | sed 's/^/  /'
else
  echo "make test: nothing skipped"
fi

# Counts: cargo's `test result:` lines and pytest's closing line. A Rust test that skipped
# counted as passed for cargo: it is moved to the skipped ones here.
read -r passed failed < <(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$log" |
  awk '{p += $1; f += $2} END {print p + 0, f + 0}')
rust_skips=$(printf '%s\n' "$skips" | grep -c '^SKIPPED [^[]' || true)
py_line=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|errors?)\b.* in [0-9.]+s' "$log" | tail -1)
count() { printf '%s\n' "$py_line" | grep -o "[0-9]* $1" | grep -o '^[0-9]*' || echo 0; }
py_passed=$(count passed)
py_failed=$(count failed)
py_errors=$(count error)
py_skipped=$(count skipped)
passed=$((passed - rust_skips + py_passed))
failed=$((failed + py_failed + py_errors))
skipped=$((rust_skips + py_skipped))
if [ "$status" -eq 0 ]; then
  echo "make test: all test groups passed"
else
  echo "make test: FAILED (exit $status): see the output above"
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit "$status"
