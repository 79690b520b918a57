# The part of scripts/fuzz-smoke.sh and scripts/fuzz-long.sh that is the same: cargo-fuzz and
# `layersec` ready, a scratch folder, keys, sealed seeds, the fixtures of ../shared/fixtures,
# the seed folders of each target, the fuzz build, and reading libFuzzer's output.
# Sourced (bash, `set -euo pipefail`) from the repository root; defines functions and sets:
#
#   root           the repository root
#   tmp            a scratch folder, removed at exit (with fuzz_tmp)
#   fuzz_tmp       $TMPDIR of the fuzz processes: on /dev/shm when there is one (the admin_api
#                  target's SQLite store syncs every write; on tmpfs that costs nothing)
#   fixtures       ../shared/fixtures (or $LS_FIXTURES); may be absent
#   target_dir     extra cargo-fuzz arguments (--target-dir when CARGO_TARGET_DIR is set)
#   fuzz_bin_dir   where the built targets are (run directly by fuzz-long.sh)
#
# Environment: LS_FIXTURES (the fixtures folder), CARGO_TARGET_DIR.

root=$PWD
fixtures=${LS_FIXTURES:-$root/../shared/fixtures}
export RUSTC_BOOTSTRAP=1

tmp=$(mktemp -d "${TMPDIR:-/tmp}/layersec-fuzz.XXXXXX")
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  fuzz_tmp=$(mktemp -d /dev/shm/layersec-fuzz.XXXXXX)
else
  fuzz_tmp="$tmp/tmpdir"
  mkdir -p "$fuzz_tmp"
fi
fuzz_cleanup() { rm -rf "$tmp" "$fuzz_tmp"; }
trap fuzz_cleanup EXIT

# With CARGO_TARGET_DIR set (the Makefile honours it) the fuzz build goes beside the others.
target_dir=()
fuzz_target_root="$root/fuzz/target"
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  target_dir=(--target-dir "$CARGO_TARGET_DIR/fuzz")
  fuzz_target_root="$CARGO_TARGET_DIR/fuzz"
fi
fuzz_bin_dir="$fuzz_target_root/$(rustc -vV | sed -n 's/^host: //p')/release"

# fuzz_tools [PATH/TO/layersec]: cargo-fuzz installed, `layersec` built; sets $layersec.
fuzz_tools() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    local t0
    t0=$(date +%s)
    cargo install cargo-fuzz --locked --quiet
    echo "fuzz: cargo-fuzz installed in $(( $(date +%s) - t0 ))s"
  fi
  layersec=${1:-}
  if [ -z "$layersec" ]; then
    cargo build --quiet -p ls-cli
    layersec="${CARGO_TARGET_DIR:-$root/target}/debug/layersec"
  fi
  [ -x "$layersec" ] || { echo "fuzz: no layersec at $layersec" >&2; exit 1; }
}

# fuzz_keys DIR: our identity, the CMS sender and an EC recipient in DIR (made when missing,
# so a resumed long run keeps the keys its corpus was sealed for); exports LS_FUZZ_KEY,
# LS_FUZZ_CERT, LS_FUZZ_SENDER. The private keys stay in DIR and never become seeds.
fuzz_keys() {
  keys=$1
  if [ ! -f "$keys/fuzz-ec.cert.pem" ]; then
    rm -rf "$keys"
    "$layersec" keygen --party fuzz-rcpt --out "$keys" --rsa-bits 2048 -q >/dev/null
    "$layersec" keygen --party fuzz-sndr --out "$keys" --key-type ec -q >/dev/null
    "$layersec" keygen --party fuzz-ec --out "$keys" --key-type ec -q >/dev/null
  fi
  export LS_FUZZ_KEY="$keys/fuzz-rcpt.key.pem" LS_FUZZ_CERT="$keys/fuzz-rcpt.cert.pem"
  export LS_FUZZ_SENDER="$keys/fuzz-sndr.cert.pem"
}

# fuzz_sealed: documents sealed by `layersec` for the keys of fuzz_keys, in $sealed.
fuzz_sealed() {
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
}

# fuzz_fixtures: the AS4 fixture signers as partners (LS_FUZZ_PARTNERS), so fixture messages
# verify up to their signature value; says which seeds are skipped when the fixtures are absent.
fuzz_fixtures() {
  if [ -d "$fixtures/as4/derived" ]; then
    local partners="$tmp/partners"
    mkdir -p "$partners"
    for c in "$fixtures"/as4/derived/*.cert.pem; do cp "$c" "$partners/"; done
    export LS_FUZZ_PARTNERS="$partners"
  fi
  if [ ! -d "$fixtures" ]; then
    echo "fuzz: NOTE: no fixtures at $fixtures (set LS_FIXTURES); skipped seeds:"
    echo "fuzz:   cms_open     the CMS fixtures (cms/*)"
    echo "fuzz:   mime_entity  the CMS fixtures and the AS4 captures (cms/*, *.as4in, *.as4out)"
    echo "fuzz:   as4_xml      the AS4 XML fixtures (as4/*.xml)"
    echo "fuzz:   as4_package  the AS4 fixtures (as4/*) and their signers as partners"
    echo "fuzz: the seeds made here and those of fuzz/seeds/<target> are used"
  elif [ ! -d "$fixtures/as4/derived" ]; then
    echo "fuzz: NOTE: no $fixtures/as4/derived: AS4 fixture signers not used as partners"
  fi
}

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

# seed_dirs TARGET: the seed folders of TARGET, one a line (made under $tmp/TARGET/seeds).
seed_dirs() {
  local t=$1 s="$tmp/$1/seeds"
  if [ ! -d "$s" ]; then
    case $t in
      cms_open)
        copy_seeds "$s" -path './cms/*'
        cp "$sealed"/* "$s/" ;;
      mime_entity)
        copy_seeds "$s" \( -path './cms/*' -o -name '*.as4in' -o -name '*.as4out' \)
        cp "$sealed/smime.eml" "$s/" ;;
      mail_read)
        copy_seeds "$s" \( -name '*.as4in' -o -name '*.as4out' -o -name '*.eml' \)
        cp "$sealed/smime.eml" "$s/" ;;
      as4_xml)
        copy_seeds "$s" -path './as4/*' -name '*.xml' ;;
      as4_package)
        copy_seeds "$s" -path './as4/*' ! -name '*.pem' ;;
      *)
        mkdir -p "$s" ;;
    esac
  fi
  echo "$s"
  [ -d "$root/fuzz/seeds/$t" ] && echo "$root/fuzz/seeds/$t"
  return 0
}

# fuzz_build: every target, once (cargo fuzz build: release, AddressSanitizer, debug assertions
# and overflow checks on).
fuzz_build() {
  local t0
  t0=$(date +%s)
  cargo fuzz build "${target_dir[@]}" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; exit 1; }
  echo "fuzz: fuzz targets built in $(( $(date +%s) - t0 ))s"
}

# fuzz_runs LOG: the number of executions libFuzzer reports (final stats, "Done", or the last
# progress line of a run that was interrupted or crashed).
fuzz_runs() {
  local n
  n=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$1" | tail -1)
  [ -n "$n" ] || n=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$1" | tail -1)
  [ -n "$n" ] || n=$(sed -n 's/^#\([0-9]*\)[[:space:]].*/\1/p' "$1" | tail -1)
  echo "${n:-0}"
}

# fuzz_cov LOG: the last coverage figure.
fuzz_cov() {
  sed -n 's/^#[0-9]*[[:space:]]*[A-Z]*[[:space:]]*cov: \([0-9]*\).*/\1/p' "$1" | tail -1
}

# fuzz_artifacts LOG: the crashing inputs libFuzzer wrote.
fuzz_artifacts() {
  sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$1"
}

# fuzz_show_crash TARGET LOG: the panic or sanitizer report and each crashing input as hex, on
# stderr.
fuzz_show_crash() {
  local t=$1 log=$2 first a
  # From the panic or sanitizer report on (the full log is libFuzzer's progress besides).
  first=$(grep -an -m1 -E "panicked at|==[0-9]+==ERROR|ERROR: libFuzzer|^SUMMARY:" "$log" | cut -d: -f1)
  echo "---- $t: libFuzzer output ----" >&2
  # Repeated stack frames (deep recursion) are shown once.
  { sed -n "${first:-1},\$p" "$log" | grep -av '^#[0-9]' | grep -av '^stat::' | cut -c1-300 |
    awk '{ k = $0; sub(/^ *#[0-9]+ 0x[0-9a-f]+ /, "", k) }
         k == prev { n++; next }
         { if (n) print "    ... the frame above repeated " n " more times"; n = 0; print; prev = k }' |
    head -100 >&2; } || true
  for a in $(fuzz_artifacts "$log"); do
    echo "---- $t: crashing input $a ($(wc -c <"$a") bytes), hex (first 1 KiB):" >&2
    head -c 1024 "$a" | od -An -v -tx1 | tr -d ' \n' | fold -w 128 >&2
    echo >&2
    echo "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run $t $a" >&2
  done
}
