#!/usr/bin/env bash
# Smoke-run every fuzz target of fuzz/ (cargo-fuzz, libFuzzer with AddressSanitizer) for a short
# time on seeds made here: documents sealed by `layersec` for keys made here, the fixtures of other
# products in ../shared/fixtures (or $LS_FIXTURES) when present, and fuzz/seeds/<target>.
# Fails when any target crashes (panic, sanitizer report, leak, timeout, out-of-memory) and
# prints the crashing input as hex. The working corpus is a temporary folder: nothing under
# fuzz/ changes (the long run, scripts/fuzz-long.sh, keeps one in fuzz/corpus).
#
#   scripts/fuzz-smoke.sh [PATH/TO/layersec]      (built with cargo when not given)
#   FUZZ_SECONDS=N    fuzzing time per target (default 25)
#   FUZZ_TARGETS="a b" only these targets (default: all of `cargo fuzz list`)
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer=address); on the stable toolchain they
# are enabled with RUSTC_BOOTSTRAP=1 for the fuzz build only. cargo-fuzz is installed from
# crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-25}
started=$(date +%s)
source scripts/fuzz-common.sh

fuzz_tools "${1:-}"
fuzz_keys "$tmp/keys"
fuzz_sealed
fuzz_fixtures
fuzz_build

targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
failed=()
summary=()
for t in $targets; do
  mapfile -t dirs < <(seed_dirs "$t")
  corpus="$tmp/$t/corpus"
  mkdir -p "$corpus"
  nseeds=$(find "${dirs[@]}" -type f | wc -l)
  log="$tmp/$t.log"
  rc=0
  # -timeout: one input running 20 s is a hang (a bug); -rss_limit_mb also bounds single
  # allocations (malloc_limit_mb defaults to it).
  TMPDIR="$fuzz_tmp" cargo fuzz run "${target_dir[@]}" "$t" "$corpus" "${dirs[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
    >"$log" 2>&1 || rc=$?
  runs=$(fuzz_runs "$log")
  cov=$(fuzz_cov "$log")
  ncorpus=$(find "$corpus" -type f | wc -l)
  if [ "$rc" -eq 0 ] && grep -q '^Done [0-9]* runs' "$log"; then
    summary+=("fuzz-smoke: $t: ok, ${runs} executions in ${seconds}s, ${nseeds} seeds, coverage ${cov:-?}, ${ncorpus} new inputs")
  else
    failed+=("$t")
    summary+=("fuzz-smoke: $t: FAILED (exit $rc) after ${runs} executions")
    fuzz_show_crash "$t" "$log"
  fi
done

printf '%s\n' "${summary[@]}"
echo "fuzz-smoke: total $(( $(date +%s) - started ))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-smoke: ${#failed[@]} target(s) crashed: ${failed[*]}" >&2
  exit 1
fi
