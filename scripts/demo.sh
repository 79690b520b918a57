#!/usr/bin/env bash
# The main job, on the embedded defaults: a local Messaging Service (embedded store, self-signed
# TLS) is started, two subscribers are created and their parties registered, ACME sends a sample
# invoice to Globex with `layersec`, Globex polls it, and the opened document, its verified
# sender and the receipt are shown. Then the service is stopped.
set -euo pipefail
BIN=${1:-target/release}
LS="$BIN/layersec"
SRV="$BIN/layersec-server"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/layersec-demo.XXXXXX")
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
say() { printf '\n== %s\n' "$*"; }
field() { python3 -c 'import json,sys; v=json.load(sys.stdin); print(v'"$1"')'; }

say "1. The provider starts a Messaging Service (embedded SQLite store, self-signed TLS on loopback)"
"$SRV" init --dir "$WORK/service" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >/dev/null
"$SRV" serve --config "$WORK/service/layersec-server.toml" 2>"$WORK/service.log" &
pid=$!
for _ in $(seq 100); do grep -q '"listening"' "$WORK/service.log" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/.*"as4":"\([^"]*\)".*/\1/p' "$WORK/service.log" | head -1)
[ -n "$URL" ] || { echo "demo: the service did not start" >&2; cat "$WORK/service.log" >&2; exit 1; }
echo "Messaging Service at $URL (pid $pid)"
ADMIN=("$SRV" admin --config "$WORK/service/layersec-server.toml")

say "2. Two businesses install layersec; the provider signs them up and registers their parties"
for party in acme globex; do
  "$LS" init --party "$party" --service "$URL" --dir "$WORK/$party" \
      --service-cert "$WORK/service/identity/service.crt" --ca-file "$WORK/service/tls/server.crt" \
      --json > "$WORK/$party.init.json" 2>"$WORK/$party.init.log"
  cert=$(field '["certificate"]' < "$WORK/$party.init.json")
  org=$([ "$party" = acme ] && echo "ACME Ltd" || echo "Globex Corporation")
  sub=$("${ADMIN[@]}" subscriber add --organisation "$org" --contact "it@$party.example" \
        --contract "LS-2026-$party" --plan standard | field '["id"]')
  "${ADMIN[@]}" party add --subscriber "$sub" --party "$party" --certificate "$cert" >/dev/null
  echo "$org: subscriber $sub, party '$party', MPC $(field '["mpc"]' < "$WORK/$party.init.json")"
done
# The partners exchange certificates (each client checks the other's signature itself).
"$LS" partners add globex "$(field '["certificate"]' < "$WORK/globex.init.json")" -c "$WORK/acme/layersec.toml" >/dev/null
"$LS" partners add acme "$(field '["certificate"]' < "$WORK/acme.init.json")" -c "$WORK/globex/layersec.toml" >/dev/null

say "3. ACME's accounting system hands over an invoice: sealed (S/MIME), signed AS4, pushed"
cat > "$WORK/invoice-2026-0042.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2">
  <ID>2026-0042</ID>
  <IssueDate>2026-11-27</IssueDate>
  <AccountingSupplierParty><Party><PartyName><Name>ACME Ltd</Name></PartyName></Party></AccountingSupplierParty>
  <AccountingCustomerParty><Party><PartyName><Name>Globex Corporation</Name></PartyName></Party></AccountingCustomerParty>
  <InvoiceLine><ID>1</ID><InvoicedQuantity unitCode="EA">12</InvoicedQuantity><LineExtensionAmount currencyID="EUR">1440.00</LineExtensionAmount></InvoiceLine>
  <LegalMonetaryTotal><PayableAmount currencyID="EUR">1713.60</PayableAmount></LegalMonetaryTotal>
</Invoice>
XML
MID=$("$LS" send "$WORK/invoice-2026-0042.xml" --to globex -c "$WORK/acme/layersec.toml")
echo "sent, the service's signed receipt verified; MessageId $MID"

say "4. Globex polls: the message is verified, the document opened and written, then receipted"
"$LS" poll --json -c "$WORK/globex/layersec.toml" > "$WORK/poll.json"
python3 - "$WORK/poll.json" "$WORK/invoice-2026-0042.xml" <<'PY'
import hashlib, json, sys
docs = [json.loads(l) for l in open(sys.argv[1]) if l.strip() and "summary" not in json.loads(l)]
assert len(docs) == 1, docs
d = docs[0]
sent = open(sys.argv[2], "rb").read()
got = open(d["path"], "rb").read()
assert got == sent, "the opened document differs from the one sent"
print(f"document:       {d['name']} ({d['size']} bytes), written to {d['path']}")
print(f"verified sender: {d['sender']} (S/MIME signature and AS4 signature checked against its certificate)")
print(f"MessageId:      {d['message_id']}")
print(f"signed at:      {d.get('signing_time')}")
print("byte-identical to what ACME sent")
PY

say "5. The receipts"
python3 - "$WORK/acme/sent" <<'PY'
import glob, json, sys
for f in glob.glob(sys.argv[1] + "/*.sent.json"):
    r = json.load(open(f))
    keys = [k for k in r if "receipt" in k]
    print("ACME's record of the service's signed receipt:", {k: r[k] for k in keys})
PY
"${ADMIN[@]}" messages > "$WORK/messages.json"
python3 - "$WORK/messages.json" <<'PY'
import json, sys
for m in json.load(open(sys.argv[1])):
    print(f"at the service: {m['message_id']} {m['from']} -> {m['to']}: {m['state']}"
          f" (Globex's signed receipt arrived {m['delivered_at']})")
PY

say "6. The service is stopped"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
echo "Demo complete"
