#!/usr/bin/env bash
# Benchmarks of the document layer: criterion (ours, the RSA anchor and openssl cms in one run),
# then the ratios, the compression size next to gzip -6, and peak memory for 100 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
cargo bench -p ls-core --bench seal_open 2>&1 | tee "$log" | grep -E "^(ours|openssl|anchor)|time:|thrpt:|compressed seal" || true
cargo bench -p ls-core --bench as4 2>&1 | grep -E "^as4|time:|typical" || true
echo "openssl speed sha256 (this run):"
openssl speed -seconds 2 -bytes 16384 sha256 2>/dev/null | tail -1 | sed "s/^/  /"
python3 scripts/bench-report.py target/criterion
dir=$(sed -n 's/^BENCH_DIR=//p' "$log" | tail -1)
if [ -n "$dir" ] && [ -f "$dir/business-100MiB.txt" ]; then
  orig=$(stat -c %s "$dir/business-100MiB.txt")
  ours=$(stat -c %s "$dir/business-100MiB.p7m")
  gz=$(gzip -6 -c "$dir/business-100MiB.txt" | wc -c)
  python3 -c "import sys; o,u,g=map(int,sys.argv[1:]); print(f'  100 MiB business text: sealed {u/o:.3f} of original (zlib level 6 on all cores, signed+encrypted), gzip -6 {g/o:.3f}; ours/gzip = {u/g:.2f}')" "$orig" "$ours" "$gz"
  rm -rf "$dir"
fi
cargo build -q --release -p ls-core --example peak_memory
for op in seal open; do "target/release/examples/peak_memory" "$op" 100 | sed 's/^/  /'; done
