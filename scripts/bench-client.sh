#!/usr/bin/env bash
# Latency from `layersec send` returning to the document appearing in the recipient's inbox,
# with the recipient's `layersec run` polling every second: p50 and p99 over N documents sent
# at random moments (so they land at every phase of the poll cycle), as ratios to the poll
# interval measured in the same run; and the daemon's resident memory while idle-polling.
#   N=200 bash scripts/bench-client.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200}
cargo build -q --release -p ls-cli -p ls-server
T=${CARGO_TARGET_DIR:-target}/release
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
"$T/layersec-server" init --dir "$dir/service" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >/dev/null
"$T/layersec-server" serve --config "$dir/service/layersec-server.toml" --log-level warn 2>"$dir/server.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '"listening"' "$dir/server.log" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/.*"as4":"\([^"]*\)".*/\1/p' "$dir/server.log" | head -1)
admin=("$T/layersec-server" admin --config "$dir/service/layersec-server.toml")
for p in alice bob; do
  "$T/layersec" init --party $p --service "$url" --dir "$dir/$p" --service-cert "$dir/service/identity/service.crt" \
      --ca-file "$dir/service/tls/server.crt" --json > "$dir/$p.json"
  sed -i 's/^interval_secs = 60/interval_secs = 1/' "$dir/$p/layersec.toml"
  sub=$("${admin[@]}" subscriber add --organisation $p | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  cert=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["certificate"])' "$dir/$p.json")
  "${admin[@]}" party add --subscriber "$sub" --party $p --certificate "$cert" >/dev/null
done
"$T/layersec" partners add bob "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["certificate"])' "$dir/bob.json")" -c "$dir/alice/layersec.toml" >/dev/null
"$T/layersec" partners add alice "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["certificate"])' "$dir/alice.json")" -c "$dir/bob/layersec.toml" >/dev/null
"$T/layersec" run -c "$dir/bob/layersec.toml" >/dev/null 2>&1 &
runpid=$!
pids+=($runpid)
python3 - "$T/layersec" "$dir" "$N" "$runpid" <<'PY'
import os, random, statistics, subprocess, sys, threading, time
ls, d, n, runpid = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
inbox = os.path.join(d, "bob", "inbox")
interval = 1.0
seen, sent_at, send_wall = {}, {}, []
stop = False
def watch():
    while not stop:
        for f in os.listdir(inbox):
            if f.startswith("doc-") and not f.endswith(".meta.json") and f not in seen:
                seen[f] = time.monotonic()
        time.sleep(0.002)
threading.Thread(target=watch, daemon=True).start()
rng = random.Random(42)
os.makedirs(os.path.join(d, "docs"), exist_ok=True)
for i in range(n):
    name = f"doc-{i:04d}.xml"
    p = os.path.join(d, "docs", name)
    with open(p, "wb") as f:
        f.write((f"<Invoice><ID>{i}</ID>" + "<Line>x</Line>" * 60 + "</Invoice>").encode())
    t = time.monotonic()
    subprocess.run([ls, "send", p, "--to", "bob", "-c", os.path.join(d, "alice", "layersec.toml")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sent_at[name] = time.monotonic()
    send_wall.append(sent_at[name] - t)
    time.sleep(rng.uniform(0, 0.2))
deadline = time.monotonic() + 30
while len(seen) < n and time.monotonic() < deadline:
    time.sleep(0.05)
stop = True
lat = sorted(seen[k] - sent_at[k] for k in sent_at if k in seen)
missing = n - len(lat)
def pct(q): return lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))]
p50, p99 = pct(0.5), pct(0.99)
print(f'{{"documents":{n},"arrived":{len(lat)},"poll_interval_s":{interval},'
      f'"p50_s":{p50:.3f},"p99_s":{p99:.3f},"p50_over_interval":{p50/interval:.3f},"p99_over_interval":{p99/interval:.3f},'
      f'"target_p50_s":{2*interval+0.05:.3f},"send_process_p50_s":{statistics.median(send_wall):.3f}}}')
if missing:
    sys.exit(f"{missing} documents did not arrive")
# Idle: the daemon keeps polling an empty MPC.
time.sleep(10)
st = open(f"/proc/{runpid}/status").read()
rss = [l.split()[1] for l in st.splitlines() if l.startswith("VmRSS")][0]
hwm = [l.split()[1] for l in st.splitlines() if l.startswith("VmHWM")][0]
print(f'{{"idle_daemon_rss_kib":{rss},"daemon_peak_rss_kib":{hwm},"target_idle_rss_kib":{15*1024}}}')
PY
