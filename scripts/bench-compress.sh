#!/usr/bin/env bash
# Compression of business text, each measure beside its anchors on the same bytes in the same run,
# input and output on tmpfs (so disk is in neither):
#   anchors    gzip -6 and pigz -6 -p 2 (the targets' anchors), zstd -3 (a reference);
#   ours       `layersec seal` end to end (read, compress, sign, encrypt, write) and
#              `layersec open` of its output (checked byte for byte against the input);
#   candidates in process, the file read first (ls-core/examples/compress_bench.rs): miniz
#              level 1 (what seal did before), zlib-rs levels 1-6 as one stream on one thread
#              (what flate2's zlib-rs backend does), the chunked parallel scheme at levels 1-6.
# Targets (issue 13): the sealed size at most 1.05 x gzip -6's, the seal's time at most
# pigz -6 -p 2's.
#
#   BENCH_COMPRESS_SIZE  the generated text (default 1G; e.g. 256M for a quick run)
#   BENCH_REPEAT         runs of each anchor and of seal, the fastest kept (default 2)
#   QUICK=1              leave out the slow references (miniz level 6, the chunk-size variants)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${BENCH_COMPRESS_SIZE:-1G}
repeat=${BENCH_REPEAT:-2}
for tool in gzip pigz zstd /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench-compress: $tool is missing (make deps)" >&2; exit 1; }
done
cargo build -q --release -p ls-cli -p ls-tests --bin layersec --bin gen-business-text
cargo build -q --release -p ls-core --example compress_bench
bin=target/release

# tmpfs, with room for the text, its compressed copies and the opened copy.
shm=/dev/shm
if ! [ -d "$shm" ] || ! [ -w "$shm" ]; then
  shm=${TMPDIR:-/tmp}
  echo "bench-compress: no writable /dev/shm, using $shm (disk may be in the measures)" >&2
fi
work=$(mktemp -d "$shm/ls-bench-compress.XXXXXX")
trap 'rm -rf "$work"' EXIT
results=$work/results.txt
: >"$results"

echo "== compression of business text ($size), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin/gen-business-text" "$size" --seed 1 -o "$work/doc.txt"
"$bin/layersec" keygen -q --party alice --out "$work/keys" --rsa-bits 2048 >/dev/null
"$bin/layersec" keygen -q --party bob --out "$work/keys" --rsa-bits 2048 >/dev/null
k=$work/keys

# measure NAME OUTPUT CMD...: the command (stdin/stdout given in CMD through sh -c) run
# $repeat times; the fastest time, its peak RSS and the output's size go to the results.
measure() {
  local name=$1 output=$2 best="" rss="" i t m
  shift 2
  for ((i = 0; i < repeat; i++)); do
    /usr/bin/time -f "%e %M" -o "$work/time" sh -c "$1"
    read -r t m <"$work/time"
    if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; rss=$m; fi
  done
  echo "RESULT $name $(stat -c %s "$output") $best $rss" >>"$results"
}

d=$work/doc.txt
measure "gzip -6" "$work/out.gz" "gzip -6 -c '$d' >'$work/out.gz'"
measure "pigz -6 -p 2" "$work/out.pigz" "pigz -6 -p 2 -c '$d' >'$work/out.pigz'"
measure "zstd -3" "$work/out.zst" "zstd -q -3 -c '$d' >'$work/out.zst'"
rm -f "$work"/out.*
measure "layersec seal" "$work/sealed.p7m" \
  "'$bin/layersec' seal -q --sign-key '$k/alice.key.pem' --sign-cert '$k/alice.cert.pem' --to '$k/bob.cert.pem' '$d' '$work/sealed.p7m'"
# Open it again (the default limit is 1 GiB as opened; allow the text and a margin).
measure "layersec open" "$work/opened.txt" \
  "'$bin/layersec' open -q --key '$k/bob.key.pem' --cert '$k/bob.cert.pem' --from '$k/alice.cert.pem' --max-size $(($(stat -c %s "$d") + (1 << 20))) '$work/sealed.p7m' '$work/opened.txt'"
cmp -s "$d" "$work/opened.txt" || { echo "bench-compress: the opened document differs" >&2; exit 1; }
rm -f "$work/opened.txt"

"$bin/examples/compress_bench" "$d" ${QUICK:+--quick} | sed 's/$/ -/' >>"$results"
echo "   load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" "$(stat -c %s "$d")" <<'EOF'
import sys
rows = [l.split()[1:] for l in open(sys.argv[1]) if l.startswith("RESULT ")]
# Names may contain spaces: the last three fields are size, seconds, RSS.
res = [(" ".join(r[:-3]), int(r[-3]), float(r[-2]), r[-1]) for r in rows]
orig = int(sys.argv[2])
by = {n: (s, t) for n, s, t, _ in res}
gz_size, _ = by["gzip -6"]
_, pigz_time = by["pigz -6 -p 2"]
print(f"   {'':28} {'bytes':>13} {'of input':>8} {'/ gzip -6':>9} {'seconds':>8} {'MB/s':>7} {'/ pigz':>7} {'peak RSS':>9}")
for n, s, t, rss in res:
    rss = f"{int(rss) >> 10} MiB" if rss != "-" else ""
    size_cols = f"{s:>13} {s / orig:>8.4f} {s / gz_size:>9.3f}" if n != "layersec open" else f"{'':>13} {'':>8} {'':>9}"
    print(f"   {n:28} {size_cols} {t:>8.2f} {orig / t / 1e6:>7.0f} {t / pigz_time:>7.2f} {rss:>9}")
seal_size, seal_time = by["layersec seal"]
ok_size = seal_size <= 1.05 * gz_size
ok_time = seal_time <= pigz_time
print(f"   target: sealed size <= 1.05 x gzip -6: {seal_size / gz_size:.3f} x  {'MET' if ok_size else 'NOT MET'}")
print(f"   target: seal time <= pigz -6 -p 2:     {seal_time / pigz_time:.2f} x  {'MET' if ok_time else 'NOT MET'}")
print("   (in-process candidates exclude reading the file; the anchors and layersec include it)")
EOF
