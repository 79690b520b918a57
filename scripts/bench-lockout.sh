#!/usr/bin/env bash
# Nobody can lock out the service: the p99 latency of legitimate push + pull + receipt rounds
# from 127.0.0.1, and the server's peak resident memory (VmHWM), first without load (the anchor,
# measured in the same run) and then while 10,000 idle or byte-trickling connections from
# 127.0.0.2 and up are held against the AS4 port. Targets: p99 under load < 1 s, peak RSS
# < 200 MB. Release build; the service's deadlines are raised so the attack is held whole.
#   ROUNDS=200 HELD=10000 bash scripts/bench-lockout.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-200}
HELD=${HELD:-10000}
cargo build -q --release -p ls-server --bin layersec-server --example lockout
T=${CARGO_TARGET_DIR:-target}/release
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
ulimit -n "$(ulimit -Hn)"
"$T/layersec-server" init --dir "$dir" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >/dev/null
sed -i 's/^header_timeout_secs = 10$/header_timeout_secs = 900/' "$dir/layersec-server.toml"
"$T/layersec-server" serve --config "$dir/layersec-server.toml" --log-level warn 2>"$dir/server.log" &
pid=$!
for _ in $(seq 100); do grep -q '"listening"' "$dir/server.log" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/.*"as4":"\([^"]*\)".*/\1/p' "$dir/server.log" | head -1)
[ -n "$url" ] || { echo "the server did not start"; cat "$dir/server.log"; exit 1; }
echo "cores: $(nproc); rounds: $ROUNDS; held connections: $HELD"
"$T/examples/lockout" "$T/layersec-server" "$dir" "$url" "$pid" "$ROUNDS" "$HELD"
kill -TERM $pid
wait $pid
pid=
grep -E '"(stopping|stopped|open_files_limit)"' "$dir/server.log" || true
