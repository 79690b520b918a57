#!/usr/bin/env bash
# Keys on a PKCS#11 token (SoftHSM2) against keys in memory, in one run (issue 17):
# 1. in process (criterion, ls-core/benches/pkcs11.rs): a 1 KiB seal+open, EC P-256, both keys
#    in memory (the anchor) or both on the token; ECDSA signing and ECDH alone, each way;
# 2. where the time goes: the PKCS#11 calls of one seal+open (ls-core/examples/pkcs11_calls.rs,
#    counted by OpenSC's pkcs11-spy; sessions and logins should not appear once warm);
# 3. the Messaging Service's throughput with 10 KiB documents (scripts/bench-server.sh's
#    loadgen: push with the service's receipt, pull, the recipient's receipt) with the
#    service's signing key in memory (the anchor), on the token, and with the parties' keys on
#    the token too; rounds in the order A B C C B A, the best of each kept; the service's CPU
#    time per message from /proc.
#   N10K=1000 PAIRS=3 bash scripts/bench-pkcs11.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N10K=${N10K:-1000}
PAIRS=${PAIRS:-3}
T=${CARGO_TARGET_DIR:-target}
MODULE=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so; do
  [ -f "$m" ] && MODULE=$m && break
done
[ -n "$MODULE" ] || { echo "bench-pkcs11: SoftHSM2 is not installed (bash scripts/deps.sh)"; exit 1; }

echo "== in process: 1 KiB seal+open, EC P-256 (criterion)"
cargo bench -q -p ls-core --bench pkcs11 2>&1 | grep -E "^pkcs11/|time:" || true
python3 - "$T/criterion" <<'EOF'
import json, sys, os
root = sys.argv[1]
def median(group, name):
    with open(os.path.join(root, group, name, "new", "estimates.json")) as f:
        return json.load(f)["median"]["point_estimate"] / 1000.0
for group, what in [("pkcs11_seal+open_1KiB", "seal+open 1 KiB"), ("pkcs11_ecdsa_sign", "ECDSA P-256 sign"), ("pkcs11_ecdh", "ECDH P-256")]:
    m, s = median(group, "memory"), median(group, "softhsm")
    print(f"  {what:18} memory {m:8.1f} µs   SoftHSM2 {s:8.1f} µs   ratio {s/m:.2f}×")
EOF

echo "== where the time goes: PKCS#11 calls per 1 KiB seal+open, keys on the token (pkcs11-spy)"
cargo run -q --release -p ls-core --example pkcs11_calls -- 200 | sed 's/^/  /'

echo "== the service: 10 KiB documents, $N10K messages, $PAIRS client pairs"
cargo build -q --release -p ls-server --bin layersec-server --example loadgen --example token_identity
R=$T/release
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
# A token of this run's own.
mkdir "$work/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/tokens" > "$work/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm2.conf
softhsm2-util --init-token --free --label ls-bench --pin 4711-bench --so-pin 0815-bench-so >/dev/null
export LS_BENCH_TOKEN_PIN=4711-bench

# One service folder per mode, each with its own store.
setup() { # mode
  local d=$work/$1
  "$R/layersec-server" init --dir "$d" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --key-type ec >/dev/null
  if [ "$1" != memory ]; then
    LOADGEN_PKCS11_MODULE=$MODULE LOADGEN_PKCS11_TOKEN=ls-bench LOADGEN_PKCS11_PIN=$LS_BENCH_TOKEN_PIN \
      "$R/examples/token_identity" "service-$1" "$d/identity/service.crt"
    rm -f "$d/identity/service.key"
    python3 - "$d/layersec-server.toml" "pkcs11:token=ls-bench;object=service-$1;type=private" "$MODULE" <<'EOF'
import sys
path, uri, module = sys.argv[1:]
out, section = [], ""
for line in open(path).read().splitlines():
    s = line.strip()
    if s.startswith("["):
        section = s
    if section == "[identity]" and s.startswith("key ="):
        out += [f'pkcs11_uri = "{uri}"', f'module = "{module}"', 'pin_env = "LS_BENCH_TOKEN_PIN"']
        continue
    if section == "[identity]" and (s.startswith("password_env") or s.startswith("password_file")):
        continue
    out.append(line)
open(path, "w").write("\n".join(out) + "\n")
EOF
  fi
}
run() { # mode → one JSON line
  local d=$work/$1
  "$R/layersec-server" serve --config "$d/layersec-server.toml" --log-level warn 2>"$d/server.log" &
  pid=$!
  for _ in $(seq 100); do grep -q '"listening"' "$d/server.log" 2>/dev/null && break; sleep 0.1; done
  local url
  url=$(sed -n 's/.*"as4":"\([^"]*\)".*/\1/p' "$d/server.log" | head -1)
  [ -n "$url" ] || { echo "the server ($1) did not start"; cat "$d/server.log"; kill $pid; exit 1; }
  local where
  where=$("$R/layersec-server" admin --config "$d/layersec-server.toml" service show |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key_location"])')
  case "$1:$where" in
    memory:pkcs11:*|service-token:/*|all-token:/*)
      echo "the server ($1) signs with $where"; kill $pid; exit 1 ;;
  esac
  local cpu0 cpu1 out
  cpu0=$(awk '{print $14 + $15}' /proc/$pid/stat)
  if [ "$1" = all-token ]; then
    out=$(LOADGEN_ANCHOR=0 LOADGEN_PKCS11_MODULE=$MODULE LOADGEN_PKCS11_TOKEN=ls-bench LOADGEN_PKCS11_PIN=$LS_BENCH_TOKEN_PIN \
      "$R/examples/loadgen" "$R/layersec-server" "$d" "$url" 10240 "$N10K" "$PAIRS")
  else
    out=$(LOADGEN_ANCHOR=0 "$R/examples/loadgen" "$R/layersec-server" "$d" "$url" 10240 "$N10K" "$PAIRS")
  fi
  cpu1=$(awk '{print $14 + $15}' /proc/$pid/stat)
  local rss
  rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  kill $pid; wait $pid 2>/dev/null || true; pid=""
  echo "{\"mode\":\"$1\",\"server_cpu_ticks\":$((cpu1 - cpu0)),\"ticks_per_second\":$(getconf CLK_TCK),\"server_peak_rss_kib\":$rss,\"loadgen\":$out}"
}
for m in memory service-token all-token; do setup $m; done
results=$work/results.jsonl
for m in memory service-token all-token all-token service-token memory; do
  line=$(run $m) || { echo "$line"; exit 1; }
  echo "$line" | tee -a "$results" | sed 's/^/  /'
done
python3 - "$results" <<'EOF'
import json, sys
best = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rate = r["loadgen"]["messages_per_second"]
    cpu_ms = 1000.0 * r["server_cpu_ticks"] / r["ticks_per_second"] / r["loadgen"]["messages"]
    if r["mode"] not in best or rate > best[r["mode"]][0]:
        best[r["mode"]] = (rate, cpu_ms, r["server_peak_rss_kib"])
anchor = best["memory"][0]
names = {"memory": "service key in memory (anchor)", "service-token": "service key on SoftHSM2",
         "all-token": "service + parties' keys on SoftHSM2"}
print("  10 KiB through the service (best of 2 rounds each):")
for m in ["memory", "service-token", "all-token"]:
    rate, cpu, rss = best[m]
    print(f"    {names[m]:38} {rate:7.1f} msg/s  {rate/anchor:.2f}×   service CPU {cpu:.2f} ms/msg   peak RSS {rss/1024:.0f} MiB")
EOF
