#!/usr/bin/env bash
# Messages per second through the Messaging Service (push with the service's receipt, then pull
# and the recipient's receipt) with 10 KiB and 1 MiB payloads and several concurrent client
# pairs, the anchor measured in the same run (plain HTTPS POSTs of the same bytes to the same
# server), and the server's peak resident memory (VmHWM).
#   N10K=2000 N1M=300 PAIRS=4 bash scripts/bench-server.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N10K=${N10K:-2000}
N1M=${N1M:-300}
PAIRS=${PAIRS:-4}
KEY=${KEY:-ec}
cargo build -q --release -p ls-server --bin layersec-server --example loadgen
T=${CARGO_TARGET_DIR:-target}/release
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
"$T/layersec-server" init --dir "$dir" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --key-type "$KEY" >/dev/null
"$T/layersec-server" serve --config "$dir/layersec-server.toml" --log-level warn 2>"$dir/server.log" &
pid=$!
for _ in $(seq 100); do grep -q '"listening"' "$dir/server.log" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/.*"as4":"\([^"]*\)".*/\1/p' "$dir/server.log" | head -1)
[ -n "$url" ] || { echo "the server did not start"; cat "$dir/server.log"; exit 1; }
echo "server keys: $KEY; cores: $(nproc); client pairs: $PAIRS"
"$T/examples/loadgen" "$T/layersec-server" "$dir" "$url" 10240 "$N10K" "$PAIRS"
"$T/examples/loadgen" "$T/layersec-server" "$dir" "$url" 1048576 "$N1M" "$PAIRS"
echo "{\"server_peak_rss_kib\":$(awk '/VmHWM/ {print $2}' /proc/$pid/status),\"server_rss_now_kib\":$(awk '/VmRSS/ {print $2}' /proc/$pid/status)}"
