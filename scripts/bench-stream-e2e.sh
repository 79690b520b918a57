#!/usr/bin/env bash
# A large document through a real layersec-server over TLS on loopback, every file on tmpfs (so
# disk is in no measure), release build; the time and peak resident memory of each process:
#   stream-transport  the message layer and the transport alone: a pre-sealed payload file
#                     pushed from a file and pulled into a spool (one process does both), the
#                     service in between; a tampered and a truncated push refused first
#                     (ls-cli/tests/stream_transport.rs)
#   stream-e2e        `layersec send` -> service -> `layersec poll`, byte for byte
#                     (ls-cli/tests/stream_e2e.rs); send seals from the document file and
#                     poll opens into the inbox as the bytes pass
# Targets (issue 13): send, poll and the service at most 64 MiB each for 1 GiB.
#
#   BENCH_STREAM_SIZE   bytes of the document (default 1073741824 = 1 GiB); about 5 times this
#                       is needed on tmpfs at the peak
set -euo pipefail
cd "$(dirname "$0")/.."
size=${BENCH_STREAM_SIZE:-1073741824}
[ -x /usr/bin/time ] || { echo "bench-stream-e2e: /usr/bin/time is missing (make deps)" >&2; exit 1; }
shm=/dev/shm
if ! [ -d "$shm" ] || ! [ -w "$shm" ]; then
  shm=${TMPDIR:-/tmp}
  echo "bench-stream-e2e: no writable /dev/shm, using $shm (disk may be in the measures)" >&2
fi
work=$(mktemp -d "$shm/ls-bench-stream.XXXXXX")
trap 'rm -rf "$work"' EXIT
free=$(df -B1 --output=avail "$work" | tail -1)
if [ "$free" -lt $((5 * size)) ]; then
  echo "bench-stream-e2e: $shm has $free bytes free, $((5 * size)) are needed" >&2
  exit 1
fi
cargo build -q --release -p ls-cli -p ls-server
echo "== $size bytes through the service, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), files on $shm"
for t in stream_transport stream_e2e; do
  # The tests print one line each: times and peak RSS.
  TMPDIR=$work LS_STREAM_E2E_BYTES=$size \
    cargo test -q --release -p ls-cli --test "$t" -- --nocapture --test-threads 1 2>&1 |
    grep -E '^stream-|FAILED|panicked' || true
done
