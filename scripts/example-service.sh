#!/usr/bin/env bash
# Runs a command beside a throwaway Messaging Service with two parties, for the bindings'
# send/poll examples (make example-java, make example-dotnet, make example-python):
#
#   scripts/example-service.sh BIN_DIR COMMAND [ARGS...]
#
# BIN_DIR holds layersec and layersec-server. A service is initialised in a new temporary
# folder (embedded store, self-signed TLS on loopback) and started; parties alice and bob are
# made with `layersec init`, signed up and registered, and trust each other's certificates.
# COMMAND then runs with ALICE_CONFIG and BOB_CONFIG (their layersec.toml files) and
# EXAMPLE_DIR (the folder) in its environment. The service is stopped afterwards and the folder
# removed unless KEEP=1. The exit status is COMMAND's.
set -euo pipefail
BIN=$(cd "${1:?usage: example-service.sh BIN_DIR COMMAND [ARGS...]}" && pwd)
shift
LS="$BIN/layersec"
SRV="$BIN/layersec-server"
for p in "$LS" "$SRV"; do
  [ -x "$p" ] || { echo "example-service: $p is missing (build it first)" >&2; exit 2; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/layersec-example.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then echo "example folder kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)'"$1"')'; }

"$SRV" init --dir "$WORK/service" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 > "$WORK/service-init.json"
"$SRV" serve --config "$WORK/service/layersec-server.toml" 2>"$WORK/service.log" &
pid=$!
for _ in $(seq 100); do grep -q '"listening"' "$WORK/service.log" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/.*"as4":"\([^"]*\)".*/\1/p' "$WORK/service.log" | head -1)
[ -n "$URL" ] || { echo "example-service: the service did not start" >&2; cat "$WORK/service.log" >&2; exit 1; }
ADMIN=("$SRV" admin --config "$WORK/service/layersec-server.toml")
for party in alice bob; do
  "$LS" init --party "$party" --service "$URL" --dir "$WORK/$party" \
    --service-cert "$WORK/service/identity/service.crt" --ca-file "$WORK/service/tls/server.crt" \
    --json > "$WORK/$party.init.json" 2>"$WORK/$party.init.log"
  sub=$("${ADMIN[@]}" subscriber add --organisation "$party" --contact "it@$party.example" \
        --contract "example-$party" --plan standard | field '["id"]')
  "${ADMIN[@]}" party add --subscriber "$sub" --party "$party" \
    --certificate "$(field '["certificate"]' < "$WORK/$party.init.json")" >/dev/null
done
"$LS" partners add bob "$(field '["certificate"]' < "$WORK/bob.init.json")" -c "$WORK/alice/layersec.toml" >/dev/null
"$LS" partners add alice "$(field '["certificate"]' < "$WORK/alice.init.json")" -c "$WORK/bob/layersec.toml" >/dev/null
echo "Messaging Service at $URL; parties alice and bob (ALICE_CONFIG, BOB_CONFIG) in $WORK" >&2

set +e
ALICE_CONFIG="$WORK/alice/layersec.toml" BOB_CONFIG="$WORK/bob/layersec.toml" EXAMPLE_DIR="$WORK" "$@"
rc=$?
set -e
exit $rc
