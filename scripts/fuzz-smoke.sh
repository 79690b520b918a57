#!/usr/bin/env bash
# Smoke-run every fuzz target of fuzz/ (cargo-fuzz, libFuzzer with AddressSanitizer) for a short
# time on seeds made here: documents sealed by `layersec` for keys made here, the fixtures of other
# products in ../shared/fixtures (or $LS_FIXTURES) when present, and fuzz/seeds/<target>.
# Fails when any target crashes (panic, sanitizer report, leak, timeout, out-of-memory) and
# prints the crashing input as hex.
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
root=$PWD
seconds=${FUZZ_SECONDS:-25}
fixtures=${LS_FIXTURES:-$root/../shared/fixtures}
export RUSTC_BOOTSTRAP=1
started=$(date +%s)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  t0=$(date +%s)
  cargo install cargo-fuzz --locked --quiet
  echo "fuzz-smoke: cargo-fuzz installed in $(( $(date +%s) - t0 ))s"
fi

layersec=${1:-}
if [ -z "$layersec" ]; then
  cargo build --quiet -p ls-cli
  layersec="${CARGO_TARGET_DIR:-$root/target}/debug/layersec"
fi
[ -x "$layersec" ] || { echo "fuzz-smoke: no layersec at $layersec" >&2; exit 1; }

# With CARGO_TARGET_DIR set (the Makefile honours it) the fuzz build goes beside the others.
target_dir=()
[ -n "${CARGO_TARGET_DIR:-}" ] && target_dir=(--target-dir "$CARGO_TARGET_DIR/fuzz")

tmp=$(mktemp -d "${TMPDIR:-/tmp}/layersec-fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --- Keys and sealed seeds -------------------------------------------------------------------
keys="$tmp/keys"
"$layersec" keygen --party fuzz-rcpt --out "$keys" --rsa-bits 2048 -q >/dev/null
"$layersec" keygen --party fuzz-sndr --out "$keys" --key-type ec -q >/dev/null
"$layersec" keygen --party fuzz-ec --out "$keys" --key-type ec -q >/dev/null
export LS_FUZZ_KEY="$keys/fuzz-rcpt.key.pem" LS_FUZZ_CERT="$keys/fuzz-rcpt.cert.pem"
export LS_FUZZ_SENDER="$keys/fuzz-sndr.cert.pem"

sealed="$tmp/sealed"
mkdir -p "$sealed"
printf '<Invoice id="1">fuzz</Invoice>\n' > "$tmp/small.xml"
for i in $(seq 1 40); do printf '<Line n="%d">repeated text compresses</Line>\n' "$i"; done > "$tmp/big.xml"
seal() { # OUT IN [options…]
  local out=$1 in=$2; shift 2
  "$layersec" seal -q --sign-key "$keys/fuzz-sndr.key.pem" --sign-cert "$keys/fuzz-sndr.cert.pem" \
    --to "$keys/fuzz-rcpt.cert.pem" "$@" "$in" "$sealed/$out"
}
seal gcm.der "$tmp/small.xml"
seal compressed.der "$tmp/big.xml"
seal cbc.der "$tmp/small.xml" --cbc --no-compress
seal smime.eml "$tmp/big.xml" --smime
seal pem.txt "$tmp/small.xml" --pem --cbc
"$layersec" seal -q --sign-key "$keys/fuzz-rcpt.key.pem" --sign-cert "$keys/fuzz-rcpt.cert.pem" \
  --to "$keys/fuzz-ec.cert.pem" --pss "$tmp/small.xml" "$sealed/ec-recipient-pss.der"

# AS4: the fixture signers are partners, so fixture messages verify up to their signature value.
partners="$tmp/partners"
mkdir -p "$partners"
if [ -d "$fixtures/as4/derived" ]; then
  for c in "$fixtures"/as4/derived/*.cert.pem; do cp "$c" "$partners/"; done
  export LS_FUZZ_PARTNERS="$partners"
fi

# copy_seeds DIR FIND-ARGS…: fixture files matching, flattened into DIR.
copy_seeds() {
  local dir=$1; shift
  mkdir -p "$dir"
  [ -d "$fixtures" ] || return 0
  (cd "$fixtures" && find . -type f ! -name README.md ! -name SHA256SUMS ! -name '*.key.pem' \
     ! -name '*.jks' "$@" -size -256k -print) |
  while IFS= read -r f; do
    f=${f#./}
    cp "$fixtures/$f" "$dir/${f//\//_}"
  done
}

seed_dirs() { # TARGET -> seed folders (made under $tmp/TARGET)
  local t=$1 s="$tmp/$1/seeds"
  case $t in
    cms_open)
      copy_seeds "$s" -path './cms/*'
      cp "$sealed"/* "$s/" ;;
    mime_entity)
      copy_seeds "$s" \( -path './cms/*' -o -name '*.as4in' -o -name '*.as4out' \)
      cp "$sealed/smime.eml" "$s/" ;;
    as4_xml)
      copy_seeds "$s" -path './as4/*' -name '*.xml' ;;
    as4_package)
      copy_seeds "$s" -path './as4/*' ! -name '*.pem' ;;
    *)
      mkdir -p "$s" ;;
  esac
  echo "$s"
  [ -d "fuzz/seeds/$t" ] && echo "$root/fuzz/seeds/$t"
  return 0
}

# --- Build once, then run each target --------------------------------------------------------
t0=$(date +%s)
cargo fuzz build "${target_dir[@]}" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; exit 1; }
echo "fuzz-smoke: fuzz targets built in $(( $(date +%s) - t0 ))s"

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
  cargo fuzz run "${target_dir[@]}" "$t" "$corpus" "${dirs[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
    >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
  [ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9]*\)[[:space:]]*DONE.*/\1/p' "$log" | tail -1)
  cov=$(sed -n 's/^#[0-9]*[[:space:]]*DONE[[:space:]]*cov: \([0-9]*\).*/\1/p' "$log" | tail -1)
  ncorpus=$(find "$corpus" -type f | wc -l)
  if [ "$rc" -eq 0 ] && [ -n "$runs" ]; then
    summary+=("fuzz-smoke: $t: ok, ${runs} executions in ${seconds}s, ${nseeds} seeds, coverage ${cov:-?}, ${ncorpus} new inputs")
  else
    failed+=("$t")
    summary+=("fuzz-smoke: $t: FAILED (exit $rc) after ${runs:-?} executions")
    # From the panic or sanitizer report on (the full log is libFuzzer's progress besides).
    first=$(grep -an -m1 -E "panicked at|==[0-9]+==ERROR|ERROR: libFuzzer|^SUMMARY:" "$log" | cut -d: -f1)
    echo "---- $t: libFuzzer output ----" >&2
    # Repeated stack frames (deep recursion) are shown once.
    { sed -n "${first:-1},/^Error: Fuzz target exited/p" "$log" | grep -av '^#[0-9]' | cut -c1-300 |
      awk '{ k = $0; sub(/^ *#[0-9]+ 0x[0-9a-f]+ /, "", k) }
           k == prev { n++; next }
           { if (n) print "    ... the frame above repeated " n " more times"; n = 0; print; prev = k }' |
      head -100 >&2; } || true
    for a in $(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log"); do
      echo "---- $t: crashing input $a ($(wc -c <"$a") bytes), hex (first 1 KiB):" >&2
      head -c 1024 "$a" | od -An -v -tx1 | tr -d ' \n' | fold -w 128 >&2
      echo >&2
      echo "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run $t $a" >&2
    done
  fi
done

printf '%s\n' "${summary[@]}"
echo "fuzz-smoke: total $(( $(date +%s) - started ))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-smoke: ${#failed[@]} target(s) crashed: ${failed[*]}" >&2
  exit 1
fi
