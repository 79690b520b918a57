#!/usr/bin/env bash
# Messages per second through the Messaging Service with 1, 2 and 3 `layersec-server serve`
# nodes on one PostgreSQL 15 (fsync on, synchronous_commit on: scripts/pg-server.sh --durable),
# against the SQLite store measured in the same run, at 10 KiB and 1 MiB: each message pushed
# (with the service's receipt), pulled, its signature verified, and the recipient's AS4 receipt
# posted (ls-server/examples/loadgen.rs; with several nodes, client pair p pushes to node p and
# pulls from node p + 1). Per configuration and size:
#   - messages per second and the ratio to SQLite of the same size (target: 1 PostgreSQL node at
#     10 KiB >= 0.8x SQLite);
#   - each node's peak RSS (VmHWM) and CPU seconds; the CPU seconds of PostgreSQL's processes;
#   - where the time goes, per message, counted between the moment loadgen's parties are
#     registered and its messages built (LOADGEN_MARK) and the moment the nodes have stopped
#     (their backends have exited, so every count is flushed), loadgen's own traffic (the admin
#     CLI) excluded: statements the nodes ran (pg_stat_statements `calls` of the role layersec,
#     BEGIN/COMMIT/SET counted as statements), transactions committed (pg_stat_database
#     xact_commit), WAL writes and WAL syncs (pg_stat_wal wal_write, wal_sync: the fsyncs of the
#     database) and WAL bytes; the statements with the most calls per message;
#   - how long a revoke made through one node takes to be enforced by another
#     (ls-server/examples/revoke_delay.rs: the directory cache's notification);
#   - SQLite: the fsync/fdatasync calls of the server per message, from a second pass of the
#     same kind under `strace -f --seccomp-bpf -c` (only those calls stop the process; that
#     pass's rate is printed, the anchor is the pass without strace).
# Each configuration gets fresh nodes (so the RSS is per size). Empty pulls: loadgen's pullers
# poll every 5 ms while they find nothing; each costs the service a pull (on PostgreSQL two short
# transactions), so they are counted too. One JSON line per configuration and size, then a
# readable summary. Needs root and PostgreSQL 15 (scripts/deps.sh).
#   N10K=1000 N1M=100 PAIRS=3 NODES="1 2 3" FSYNC_N10K=500 FSYNC_N1M=50 bash scripts/bench-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N10K=${N10K:-1000}
N1M=${N1M:-100}
PAIRS=${PAIRS:-3}
NODES=${NODES:-1 2 3}
FSYNC_N10K=${FSYNC_N10K:-$((N10K / 2))}
FSYNC_N1M=${FSYNC_N1M:-$((N1M / 2))}
KEY=${KEY:-ec}
cargo build -q --release -p ls-server --bin layersec-server --example loadgen --example revoke_delay
T=$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)
PG=scripts/pg-server.sh
# Under /tmp: every folder above the cluster's must be traversable by the user postgres.
work=$(mktemp -d /tmp/bench-cluster.XXXXXX)
chmod 0755 "$work"
# The children of this script (a server, or strace running one) and the servers themselves.
pids=()
servers=()
stop_nodes() {
  local p
  for p in "${servers[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  servers=()
}
cleanup() {
  stop_nodes
  "$PG" stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL on the first free port from 5480 (pg-server.sh exits 4 when a port is taken).
port=${BENCH_PG_PORT:-5480}
while :; do
  rc=0
  "$PG" start "$work/pg" --port "$port" --durable --stats >"$work/pg.env" || rc=$?
  [ "$rc" = 0 ] && break
  [ "$rc" = 4 ] && [ "$port" -lt 5600 ] || { echo "PostgreSQL did not start"; exit 1; }
  port=$((port + 1))
done
# shellcheck disable=SC1091
. "$work/pg.env"
sql() { "$PG" sql "$work/pg" "$1" "${2:-layersec}"; }

"$T/layersec-server" init --dir "$work/sqlite" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --key-type "$KEY" >/dev/null
"$T/layersec-server" init --dir "$work/pg1" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --key-type "$KEY" --store-url "$PG_URL" --store-password-file "$PG_PASSWORD_FILE" >/dev/null
# Further nodes: the first one's folder (one identity, TLS certificate and admin token), each
# with its own data/ (spool); the ports are the system's choice (listen = 127.0.0.1:0).
for k in 2 3; do
  mkdir "$work/pg$k"
  (cd "$work/pg1" && tar --exclude=./data -cf - .) | (cd "$work/pg$k" && tar -xf -)
done

# Start `serve` in folder $1 (under strace counting fsyncs into $2 when given); the PIDs are
# appended to pids and servers, its AS4 URL to urls.
start_node() {
  local d=$1 trace=${2:-} pid url
  if [ -n "$trace" ]; then
    strace -f -qq --seccomp-bpf -c -e trace=fsync,fdatasync,sync_file_range -o "$trace" \
      "$T/layersec-server" serve --config "$d/layersec-server.toml" --log-level warn 2>"$d/server.log" &
  else
    "$T/layersec-server" serve --config "$d/layersec-server.toml" --log-level warn 2>"$d/server.log" &
  fi
  pid=$!
  pids+=("$pid")
  for _ in $(seq 200); do grep -q '"listening"' "$d/server.log" 2>/dev/null && break; sleep 0.05; done
  url=$(sed -n 's/.*"as4":"\([^"]*\)".*/\1/p' "$d/server.log" | head -1)
  [ -n "$url" ] || { echo "the server in $d did not start" >&2; cat "$d/server.log" >&2; exit 1; }
  urls+=("$url")
  # Under strace the server is strace's child (strace itself does not pass SIGTERM on).
  if [ -n "$trace" ]; then servers+=("$(pgrep -P "$pid" | head -1)"); else servers+=("$pid"); fi
}

# CPU ticks of PostgreSQL's processes, "pid ticks" a line.
pg_ticks() {
  local p
  for p in $(pgrep -P "$PG_PID") "$PG_PID"; do
    sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk -v p="$p" '{print p, $12 + $13}'
  done
}
# xact_commit|wal_write|wal_sync|wal_bytes (database layersec; the snapshot runs as postgres in
# the database postgres, so it counts in none of them).
counters() {
  sql "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = 'layersec'), wal_write, wal_sync, wal_bytes FROM pg_stat_wal" postgres
}
# What LOADGEN_MARK runs: the counters at the start of the measured part.
cat >"$work/mark.sh" <<EOF
#!/usr/bin/env bash
set -e
"$PWD/$PG" sql "$work/pg" "SELECT pg_stat_statements_reset()" layersec >/dev/null
"$PWD/$PG" sql "$work/pg" "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = 'layersec'), wal_write, wal_sync, wal_bytes FROM pg_stat_wal" postgres >"$work/counters.start"
for p in \$(pgrep -P $PG_PID) $PG_PID; do
  sed 's/^.*) //' "/proc/\$p/stat" 2>/dev/null | awk -v p="\$p" '{print p, \$12 + \$13}'
done >"$work/ticks.start"
EOF
chmod +x "$work/mark.sh"

HZ=$(getconf CLK_TCK)
results=$work/results.jsonl
: >"$results"

# One measured pass: store $1 (sqlite|postgres), nodes $2, payload bytes $3, messages $4; $5
# "fsync" for SQLite's strace pass.
run() {
  local store=$1 nodes=$2 size=$3 n=$4 mode=${5:-} k line rss=() cpu=() trace=
  urls=()
  if [ "$store" = sqlite ]; then
    [ "$mode" = fsync ] && trace=$work/strace.txt
    start_node "$work/sqlite" "$trace"
  else
    for k in $(seq "$nodes"); do start_node "$work/pg$k"; done
  fi
  local list
  list=$(IFS=,; echo "${urls[*]}")
  if [ "$store" = postgres ]; then
    line=$(LOADGEN_ANCHOR=0 LOADGEN_MARK="$work/mark.sh" \
      "$T/examples/loadgen" "$T/layersec-server" "$work/pg1" "$list" "$size" "$n" "$PAIRS")
  else
    line=$(LOADGEN_ANCHOR=0 "$T/examples/loadgen" "$T/layersec-server" "$work/sqlite" "$list" "$size" "$n" "$PAIRS")
  fi
  local p
  for p in "${servers[@]}"; do
    rss+=("$(awk '/VmHWM/ {print $2}' "/proc/$p/status")")
    cpu+=("$(sed 's/^.*) //' "/proc/$p/stat" | awk -v hz="$HZ" '{printf "%.2f", ($12 + $13) / hz}')")
  done
  local pg_cpu=null
  if [ "$store" = postgres ]; then
    pg_ticks >"$work/ticks.end"
    pg_cpu=$(awk -v hz="$HZ" 'NR == FNR {s[$1] = $2; next} {t += $2 - ($1 in s ? s[$1] : 0)} END {printf "%.2f", t / hz}' \
      "$work/ticks.start" "$work/ticks.end")
  fi
  stop_nodes
  local extra="{}"
  if [ "$store" = postgres ]; then
    # The nodes' backends flush their counts when they exit.
    for _ in $(seq 100); do
      [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE usename = 'layersec'" postgres)" = 0 ] && break
      sleep 0.05
    done
    sleep 1.1
    counters >"$work/counters.end"
    sql "SELECT calls, round(total_exec_time::numeric, 3), regexp_replace(query, '\s+', ' ', 'g') FROM pg_stat_statements WHERE userid = (SELECT oid FROM pg_roles WHERE rolname = 'layersec') ORDER BY calls DESC" >"$work/statements.txt"
    extra=$(python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
a = [int(x) for x in open(f"{w}/counters.start").read().split("|")]
b = [int(x) for x in open(f"{w}/counters.end").read().split("|")]
d = [y - x for x, y in zip(a, b)]
st = []
for l in open(f"{w}/statements.txt"):
    calls, ms, q = l.rstrip("\n").split("|", 2)
    st.append((int(calls), float(ms), q))
print(json.dumps({"statements": sum(c for c, _, _ in st), "statement_ms": round(sum(m for _, m, _ in st), 1),
                  "xact_commit": d[0], "wal_write": d[1], "wal_sync": d[2], "wal_bytes": d[3],
                  "top": [{"calls": c, "ms": m, "query": q[:110]} for c, m, q in st[:12]]}))
PY
)
  elif [ -n "$trace" ]; then
    extra=$(python3 - "$trace" <<'PY'
import json, sys
calls = {}
for l in open(sys.argv[1]):
    f = l.split()
    if len(f) >= 5 and f[-1] in ("fsync", "fdatasync", "sync_file_range"):
        calls[f[-1]] = int(f[3])
print(json.dumps({"fsync_calls": calls}))
PY
)
  fi
  python3 - "$store" "$nodes" "$mode" "$line" "$extra" "$(IFS=,; echo "${rss[*]}")" "$(IFS=,; echo "${cpu[*]}")" "$pg_cpu" <<'PY' >>"$results"
import json, sys
store, nodes, mode, line, extra, rss, cpu, pg_cpu = sys.argv[1:]
l = json.loads(line)
e = json.loads(extra)
n = l["messages"]
r = {"bench": "cluster", "store": store, "nodes": int(nodes), "pass": mode or "measure",
     "payload_bytes": l["payload_bytes"], "messages": n, "client_pairs": l["client_pairs"],
     "seconds": l["seconds"], "messages_per_second": l["messages_per_second"],
     "empty_pulls": l["empty_pulls"],
     "node_peak_rss_kib": [int(x) for x in rss.split(",")],
     "node_cpu_seconds": [float(x) for x in cpu.split(",")],
     "node_cpu_ms_per_message": round(sum(float(x) for x in cpu.split(",")) * 1000 / n, 3)}
if pg_cpu != "null":
    r["postgres_cpu_seconds"] = float(pg_cpu)
    r["postgres_cpu_ms_per_message"] = round(float(pg_cpu) * 1000 / n, 3)
if "statements" in e:
    per = lambda k: round(e[k] / n, 2)
    r.update({"statements_per_message": per("statements"),
              "statement_exec_ms_per_message": round(e["statement_ms"] / n, 3),
              "transactions_per_message": per("xact_commit"),
              "wal_writes_per_message": per("wal_write"), "wal_syncs_per_message": per("wal_sync"),
              "wal_bytes_per_message": round(e["wal_bytes"] / n),
              "top_statements_per_message": [{"calls": round(t["calls"] / n, 2),
                                              "exec_ms": round(t["ms"] / n, 3), "query": t["query"]}
                                             for t in e["top"]]})
if "fsync_calls" in e:
    r["fsync_calls"] = e["fsync_calls"]
    r["fsyncs_per_message"] = round(sum(e["fsync_calls"].values()) / n, 2)
print(json.dumps(r))
PY
  tail -1 "$results"
}

echo "cores: $(nproc); load average: $(cut -d' ' -f1-3 /proc/loadavg); client pairs: $PAIRS; server keys: $KEY; PostgreSQL $(sql 'SHOW server_version' postgres) (fsync $(sql 'SHOW fsync' postgres), synchronous_commit $(sql 'SHOW synchronous_commit' postgres)) on port $PG_PORT"
for spec in "10240 $N10K $FSYNC_N10K" "1048576 $N1M $FSYNC_N1M"; do
  read -r size n nf <<<"$spec"
  run sqlite 1 "$size" "$n"
  for k in $NODES; do run postgres "$k" "$size" "$n"; done
  [ "$nf" -gt 0 ] && run sqlite 1 "$size" "$nf" fsync
done
# How long a revoke through one node takes to be enforced by another (its directory cache
# dropped by the notification): REVOKE_ROUNDS revokes, the delay from each commit to the other
# node's first lookup that sees it.
"$T/examples/revoke_delay" "$PG_URL" "$PG_PASSWORD_FILE" "${REVOKE_ROUNDS:-100}" | tee "$work/revoke.json"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" "$work/revoke.json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
revoke = json.loads(open(sys.argv[2]).read())
print()
print("Summary (messages/s; ratio to SQLite of the same size and run; per message: statements,")
print("transactions, WAL writes, WAL syncs = the database's fsyncs; SQLite: fsync calls from the strace pass)")
for size in sorted({r["payload_bytes"] for r in rows}):
    base = next(r for r in rows if r["payload_bytes"] == size and r["store"] == "sqlite" and r["pass"] == "measure")
    fs = next((r for r in rows if r["payload_bytes"] == size and r["pass"] == "fsync"), None)
    print(f"\n{size // 1024} KiB ({base['messages']} messages, {base['client_pairs']} client pairs)")
    for r in rows:
        if r["payload_bytes"] != size or r["pass"] != "measure":
            continue
        ratio = r["messages_per_second"] / base["messages_per_second"]
        rss = "/".join(f"{x // 1024}" for x in r["node_peak_rss_kib"])
        name = "SQLite" if r["store"] == "sqlite" else f"PostgreSQL x{r['nodes']}"
        s = (f"  {name:<14} {r['messages_per_second']:8.1f} msg/s  {ratio:5.2f}x  peak RSS MiB {rss:<10}"
             f" node CPU {r['node_cpu_ms_per_message']:.2f} ms/msg  empty pulls {r['empty_pulls'] / r['messages']:.2f}")
        if r["store"] == "postgres":
            s += (f"  PG CPU {r['postgres_cpu_ms_per_message']:.2f} ms/msg  stmts {r['statements_per_message']}"
                  f"  xacts {r['transactions_per_message']}  WAL writes {r['wal_writes_per_message']}"
                  f"  WAL syncs {r['wal_syncs_per_message']}  WAL {r['wal_bytes_per_message'] // 1024} KiB")
        elif fs:
            s += f"  fsyncs {fs['fsyncs_per_message']} ({fs['fsync_calls']}; strace pass {fs['messages_per_second']:.1f} msg/s)"
        print(s)
        if r["store"] == "postgres" and size == 10240 and r["nodes"] == 1:
            target = ratio >= 0.8
            print(f"    target 1 PostgreSQL node at 10 KiB >= 0.8x SQLite: {'MET' if target else 'NOT MET'} ({ratio:.2f}x)")
one = next((r for r in rows if r["store"] == "postgres" and r["nodes"] == 1 and r["payload_bytes"] == 10240), None)
if one:
    print("\nStatements with the most calls per message (1 PostgreSQL node, 10 KiB): calls, exec ms, query")
    for t in one["top_statements_per_message"]:
        print(f"  {t['calls']:6.2f} {t['exec_ms']:7.3f}  {t['query']}")
print(f"\nA revoke through one node enforced by another: p50 {revoke['p50_ms']} ms, p99 {revoke['p99_ms']} ms,"
      f" max {revoke['max_ms']} ms over {revoke['rounds']} revokes (the cache was live in {revoke['cached_before']})")
PY
