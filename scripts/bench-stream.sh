#!/usr/bin/env bash
# Sealing and opening a large incompressible document as streams, each measure beside its
# anchors measured in the same run, input and output on tmpfs (so disk is in neither):
#   floor      `openssl speed -evp aes-256-gcm` plus `-evp sha256` on 64 KiB buffers: the time
#              to encrypt (or decrypt) and hash the document once, nothing else;
#   anchors    `openssl cms -sign -stream | openssl cms -encrypt -stream -aes-256-gcm` (seal)
#              and `openssl cms -decrypt | openssl cms -verify` (open) on the same bytes;
#   ours       `layersec seal --no-compress` and `layersec open` (checked byte for byte),
#              wall time and peak RSS (GNU time).
# Targets (issue 13): seal and open of 1 GiB at most 1.5 x the floor, at most 32 MiB RSS.
#
#   BENCH_STREAM_SIZE  the document (default 1G)
#   BENCH_REPEAT       runs of each of ours, the fastest kept (default 3)
#   BENCH_REPEAT_ANCHOR  runs of each openssl cms anchor (default 1: its open takes ~30 s; 0
#                        leaves the anchors out)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${BENCH_STREAM_SIZE:-1G}
repeat=${BENCH_REPEAT:-3}
repeat_anchor=${BENCH_REPEAT_ANCHOR:-1}
command -v /usr/bin/time >/dev/null || { echo "bench-stream: /usr/bin/time is missing (make deps)" >&2; exit 1; }
cargo build -q --release -p ls-cli --bin layersec
bin=target/release

shm=/dev/shm
if ! [ -d "$shm" ] || ! [ -w "$shm" ]; then
  shm=${TMPDIR:-/tmp}
  echo "bench-stream: no writable /dev/shm, using $shm (disk may be in the measures)" >&2
fi
work=$(mktemp -d "$shm/ls-bench-stream.XXXXXX")
trap 'rm -rf "$work"' EXIT
results=$work/results.txt
: >"$results"

echo "== seal and open as streams ($size, incompressible), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
head -c "$size" /dev/urandom >"$work/doc.bin"
bytes=$(stat -c %s "$work/doc.bin")
"$bin/layersec" keygen -q --party alice --out "$work/keys" --rsa-bits 2048 >/dev/null
"$bin/layersec" keygen -q --party bob --out "$work/keys" --rsa-bits 2048 >/dev/null
k=$work/keys

# The floor: AES-256-GCM and SHA-256 over the document's size at openssl speed's rates.
rate() { openssl speed -mr -seconds 3 -bytes 65536 -evp "$1" 2>/dev/null | awk -F: '/^\+F:/ {print $4}'; }
gcm=$(rate aes-256-gcm)
sha=$(rate sha256)
floor=$(awk -v b="$bytes" -v g="$gcm" -v s="$sha" 'BEGIN { printf "%.3f", b / g + b / s }')
printf 'floor: aes-256-gcm %.0f MB/s, sha256 %.0f MB/s: %s s for %s bytes\n' \
  "$(awk -v g="$gcm" 'BEGIN{print g/1e6}')" "$(awk -v s="$sha" 'BEGIN{print s/1e6}')" "$floor" "$bytes"

# measure NAME CMD: run through sh -c $repeat times; the fastest wall time and its peak RSS
# (GNU time's %M: the largest of the processes of a pipeline) go to the results.
measure() {
  local name=$1 best="" rss="" i t m n=${3:-$repeat}
  for ((i = 0; i < n; i++)); do
    /usr/bin/time -f "%e %M" -o "$work/time" sh -c "$2"
    read -r t m <"$work/time"
    if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; rss=$m; fi
  done
  echo "RESULT $name $best $rss" >>"$results"
  printf '%-44s %7.2f s %8.1f MiB\n' "$name" "$best" "$(awk -v m="$rss" 'BEGIN{print m/1024}')"
}

d=$work/doc.bin
if [ "$repeat_anchor" -gt 0 ]; then
measure "openssl cms -sign -stream | -encrypt -stream" \
  "openssl cms -sign -stream -binary -nodetach -outform DER -md sha256 -in '$d' -signer '$k/alice.cert.pem' -inkey '$k/alice.key.pem' \
   | openssl cms -encrypt -stream -binary -inform DER -outform DER -aes-256-gcm -out '$work/os.p7m' '$k/bob.cert.pem'" "$repeat_anchor"
measure "openssl cms -decrypt | -verify" \
  "openssl cms -decrypt -binary -inform DER -in '$work/os.p7m' -recip '$k/bob.cert.pem' -inkey '$k/bob.key.pem' \
   | openssl cms -verify -binary -inform DER -nointern -partial_chain -certfile '$k/alice.cert.pem' -CAfile '$k/alice.cert.pem' -out '$work/os.out' 2>/dev/null" "$repeat_anchor"
cmp "$d" "$work/os.out"
rm -f "$work/os.p7m" "$work/os.out"
fi
measure "layersec seal --no-compress" \
  "'$bin/layersec' -q seal --no-compress --sign-key '$k/alice.key.pem' --sign-cert '$k/alice.cert.pem' --to '$k/bob.cert.pem' '$d' '$work/ours.p7m'"
measure "layersec open" \
  "'$bin/layersec' -q open --key '$k/bob.key.pem' --cert '$k/bob.cert.pem' --from '$k/alice.cert.pem' --max-size $bytes '$work/ours.p7m' '$work/ours.out'"
cmp "$d" "$work/ours.out"

echo "-- against the floor ($floor s) and the 32 MiB bound"
awk -v floor="$floor" '
  $1 == "RESULT" {
    name = $2; for (i = 3; i < NF - 1; i++) name = name " " $i
    t[name] = $(NF - 1); m[name] = $NF
  }
  END {
    split("layersec seal --no-compress|layersec open", ours, "|")
    for (i = 1; i <= 2; i++) {
      n = ours[i]
      printf "%-30s %.2f x the floor (target <= 1.5), %.1f MiB peak RSS (target <= 32)\n", n, t[n] / floor, m[n] / 1024
    }
    if (("openssl cms -decrypt | -verify") in t) {
    printf "%-30s %.2f x the floor, %.1f MiB\n", "openssl cms seal (anchor)", t["openssl cms -sign -stream | -encrypt -stream"] / floor, m["openssl cms -sign -stream | -encrypt -stream"] / 1024
    printf "%-30s %.2f x the floor, %.1f MiB\n", "openssl cms open (anchor)", t["openssl cms -decrypt | -verify"] / floor, m["openssl cms -decrypt | -verify"] / 1024
    }
  }' "$results"
