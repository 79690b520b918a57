#!/usr/bin/env bash
# The long fuzzing run (`make fuzz-long`; not run by CI or `make test`): every target of fuzz/
# for FUZZ_LONG_RUNS executions (default 10 million) or FUZZ_LONG_SECONDS of fuzzing (default
# 1800), whichever comes first, on the same seeds as the smoke run (scripts/fuzz-common.sh).
# Then each corpus is minimised (libFuzzer -merge=1) and fuzz/seeds/<target> gets a small set of
# the corpus inputs that add the most coverage (scripts/fuzz-seeds.py; commit them by hand); a
# target that crashed is minimised too (its corpus holds no crashing input).
# Prints per target: executions, time, corpus size, crashes (with the crashing input as hex).
#
# Resumable: the working corpus is fuzz/corpus/<target> (ignored by git) and
# fuzz/corpus/.fuzz-long/ holds the state (<target>.state: executions and seconds done, done or
# crashed) and the keys the sealed seeds are made for. The run goes in chunks of
# FUZZ_CHUNK_SECONDS (default 300) and the state is written after each chunk and on Ctrl-C or
# SIGTERM, so a new run skips the finished targets and gives an interrupted one what remains
# (a hard kill loses at most the chunk in flight). A crashed target is retried on the next run
# only if its crashing input no longer crashes.
# Start over: `rm -rf fuzz/corpus/.fuzz-long` (the corpora stay and seed the new run) or
# `rm -rf fuzz/corpus` (everything), or FUZZ_LONG_FRESH=1.
#
#   scripts/fuzz-long.sh [PATH/TO/layersec]
#   FUZZ_TARGETS="a b"   only these targets (default: all)
#   FUZZ_TIMEOUT=N       seconds for one input before it counts as a hang (default 60: the run
#                        is meant for `nice -n 19` on a busy machine)
#   FUZZ_SEEDS_MAX=N, FUZZ_SEEDS_KB=N   the generated seeds kept per target (default 24, 192)
set -euo pipefail
cd "$(dirname "$0")/.."
max_runs=${FUZZ_LONG_RUNS:-10000000}
max_secs=${FUZZ_LONG_SECONDS:-1800}
chunk=${FUZZ_CHUNK_SECONDS:-300}
timeout=${FUZZ_TIMEOUT:-60}
source scripts/fuzz-common.sh

state_dir="$root/fuzz/corpus/.fuzz-long"
[ "${FUZZ_LONG_FRESH:-0}" = 1 ] && rm -rf "$state_dir"
mkdir -p "$state_dir"

fuzz_tools "${1:-}"
fuzz_keys "$state_dir/keys"
fuzz_sealed
fuzz_fixtures
fuzz_build

# The state of a target: runs= secs= status=(running|done|crashed) artifact= minimised=(yes|no)
load_state() {
  runs=0 secs=0 status=running artifact= minimised=no
  local f="$state_dir/$1.state"
  [ -f "$f" ] || return 0
  runs=$(sed -n 's/^runs=//p' "$f"); secs=$(sed -n 's/^secs=//p' "$f")
  status=$(sed -n 's/^status=//p' "$f"); artifact=$(sed -n 's/^artifact=//p' "$f")
  minimised=$(sed -n 's/^minimised=//p' "$f")
  runs=${runs:-0} secs=${secs:-0} status=${status:-running} minimised=${minimised:-no}
}
save_state() {
  printf 'runs=%s\nsecs=%s\nstatus=%s\nartifact=%s\nminimised=%s\nupdated=%s\n' \
    "$runs" "$secs" "$status" "$artifact" "$minimised" "$(date -u +%FT%TZ)" >"$state_dir/$1.state.tmp"
  mv "$state_dir/$1.state.tmp" "$state_dir/$1.state"
}

# Interrupted: count what the chunk in flight did, then stop.
child= chunk_start= chunk_log= current=
on_signal() {
  if [ -n "$child" ]; then
    kill -INT "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
    runs=$(( runs + $(fuzz_runs "$chunk_log") ))
    secs=$(( secs + $(date +%s) - chunk_start ))
    save_state "$current"
    echo "fuzz-long: interrupted: $current has $runs executions in ${secs}s; run again to resume" >&2
  fi
  exit 130
}
trap on_signal INT TERM

# run_target T: fuzz T in chunks until its budget is spent or it crashes.
run_target() {
  local t=$1 bin="$fuzz_bin_dir/$1" corpus="$root/fuzz/corpus/$1" dirs rc n left_runs left_secs
  mapfile -t dirs < <(seed_dirs "$t")
  mkdir -p "$corpus" "$root/fuzz/artifacts/$t"
  while [ "$runs" -lt "$max_runs" ] && [ "$secs" -lt "$max_secs" ]; do
    left_runs=$(( max_runs - runs ))
    left_secs=$(( max_secs - secs ))
    [ "$left_secs" -gt "$chunk" ] && left_secs=$chunk
    chunk_log="$tmp/$t.$(date +%s).log"
    chunk_start=$(date +%s)
    current=$t
    echo "fuzz-long: $t: $runs executions, ${secs}s done; next chunk ≤ ${left_secs}s (log $chunk_log)"
    rc=0
    TMPDIR="$fuzz_tmp" "$bin" "$corpus" "${dirs[@]}" -runs="$left_runs" \
      -max_total_time="$left_secs" -rss_limit_mb=2048 -timeout="$timeout" \
      -print_final_stats=1 -artifact_prefix="$root/fuzz/artifacts/$t/" >"$chunk_log" 2>&1 &
    child=$!
    wait "$child" || rc=$?
    child=
    n=$(fuzz_runs "$chunk_log")
    runs=$(( runs + n ))
    secs=$(( secs + $(date +%s) - chunk_start ))
    if [ "$rc" -ne 0 ] || ! grep -q '^Done [0-9]* runs' "$chunk_log"; then
      status=crashed
      artifact=$(fuzz_artifacts "$chunk_log" | tail -1)
      save_state "$t"
      cp "$chunk_log" "$state_dir/$t.crash.log"
      fuzz_show_crash "$t" "$chunk_log"
      return 0
    fi
    save_state "$t"
  done
}

# minimise T: the corpus through libFuzzer -merge=1, then the committed seeds updated.
minimise() {
  local t=$1 bin="$fuzz_bin_dir/$1" corpus="$root/fuzz/corpus/$1" out="$tmp/$1.min"
  rm -rf "$out"
  mkdir -p "$out"
  if ! TMPDIR="$fuzz_tmp" "$bin" -merge=1 -rss_limit_mb=2048 -timeout="$timeout" \
      "$out" "$corpus" >"$tmp/$t.merge.log" 2>&1; then
    echo "fuzz-long: $t: the corpus minimisation failed (the corpus is kept):" >&2
    tail -20 "$tmp/$t.merge.log" >&2
    return 1
  fi
  rm -rf "$corpus.old"
  mv "$corpus" "$corpus.old" && mv "$out" "$corpus" && rm -rf "$corpus.old"
  TMPDIR="$fuzz_tmp" python3 scripts/fuzz-seeds.py --target "$t" --binary "$bin" \
    --corpus "$corpus" --seeds "$root/fuzz/seeds/$t" --fixtures "$fixtures" \
    --max-files "${FUZZ_SEEDS_MAX:-24}" --max-kb "${FUZZ_SEEDS_KB:-192}" --scratch "$tmp/$t.seeds"
}

targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
for t in $targets; do
  load_state "$t"
  if [ "$status" = done ]; then
    echo "fuzz-long: $t: done earlier ($runs executions, ${secs}s)"
    continue
  fi
  if [ "$status" = crashed ]; then
    if [ -n "$artifact" ] && [ -f "$artifact" ] &&
       ! TMPDIR="$fuzz_tmp" "$fuzz_bin_dir/$t" "$artifact" >"$tmp/$t.retry.log" 2>&1; then
      echo "fuzz-long: $t: still crashes on $artifact (see $state_dir/$t.crash.log); skipped"
      # The corpus holds no crashing input: it is minimised and gives seeds all the same.
      if [ "$minimised" != yes ] && minimise "$t"; then
        minimised=yes
        save_state "$t"
      fi
      continue
    fi
    echo "fuzz-long: $t: the recorded crash no longer reproduces; resuming"
    status=running artifact=
    save_state "$t"
  fi
  minimised=no
  run_target "$t"
  # After a crash too: the corpus holds no crashing input (libFuzzer does not add them).
  minimise "$t" && minimised=yes
  [ "$status" = crashed ] || status=done
  save_state "$t"
done

# The summary, from the state files (so a resumed run reports the whole campaign).
echo
echo "fuzz-long: summary (limits: $max_runs executions or ${max_secs}s per target)"
crashed=()
for t in $targets; do
  load_state "$t"
  corpus="$root/fuzz/corpus/$t"
  nfiles=$(find "$corpus" -type f 2>/dev/null | wc -l)
  kb=$(find "$corpus" -type f -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { printf "%d", (s + 1023) / 1024 }')
  nseeds=$(find "$root/fuzz/seeds/$t" -type f 2>/dev/null | wc -l)
  line="fuzz-long: $t: $status, $runs executions in ${secs}s, corpus $nfiles files (${kb:-0} KiB), $nseeds committed seeds"
  if [ "$status" = crashed ]; then
    crashed+=("$t")
    line+=", CRASH: ${artifact:-no artifact} (log $state_dir/$t.crash.log)"
  else
    line+=", no crash"
  fi
  echo "$line"
  if [ "$status" = crashed ] && [ -n "$artifact" ] && [ -f "$artifact" ]; then
    echo "  hex (first 1 KiB): $(head -c 1024 "$artifact" | od -An -v -tx1 | tr -d ' \n')"
  fi
done
echo "fuzz-long: keys of this campaign (for reproducing cms_open/as4 crashes): LS_FUZZ_KEY=$LS_FUZZ_KEY LS_FUZZ_CERT=$LS_FUZZ_CERT LS_FUZZ_SENDER=$LS_FUZZ_SENDER"
if [ ${#crashed[@]} -gt 0 ]; then
  echo "fuzz-long: ${#crashed[@]} target(s) crashed: ${crashed[*]}" >&2
  exit 1
fi
