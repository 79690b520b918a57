#!/usr/bin/env bash
# The main job, on the embedded defaults: a local Messaging Service (embedded store, self-signed
# TLS) is started, two subscribers are created and their parties registered, ACME sends a sample
# invoice to Globex with `layersec`, the message is shown as the service holds it (the payload
# sealed for Globex), Globex polls it, and the opened document, its verified sender and the
# receipts are shown. Then the service is stopped.
#
# Every `layersec` and `layersec-server` command is shown before it runs, as you would type it
# with the programs on PATH and DEMO set to the demo's folder. The folder is kept (a new one
# per run): the service's configuration, store and log, both clients' folders, the inbox.
set -euo pipefail
BIN=${1:-target/release}
LS="$BIN/layersec"
SRV="$BIN/layersec-server"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/layersec-demo.XXXXXX")
# fd 3: the terminal (or wherever make demo's output goes), also inside $( ) captures.
exec 3>&1
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
say() { printf '\n== %s\n' "$*"; }
field() { python3 -c 'import json,sys; v=json.load(sys.stdin); print(v'"$1"')'; }

# Show a command as it runs: the programs by name, the demo folder as $DEMO, arguments with
# spaces or quotes in double quotes.
show() {
  local line="" a
  for a in "$@"; do
    a=${a//"$WORK"/\$DEMO}
    [ "$a" = "$LS" ] && a=layersec
    [ "$a" = "$SRV" ] && a=layersec-server
    case $a in
      *[[:space:]\"\'\;\&\|\<\>\(\)]*) a=\"${a//\"/\\\"}\" ;;
    esac
    line+=" $a"
  done
  printf '  $%s\n' "$line" >&3
}
run() { show "$@"; "$@"; }

echo "Demo folder (kept): $WORK"
echo "The commands below run with DEMO=$WORK and $BIN on PATH."

say "1. The provider starts a Messaging Service (embedded SQLite store, self-signed TLS on loopback)"
run "$SRV" init --dir "$WORK/service" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  > "$WORK/service-init.json"
show "$SRV" serve --config "$WORK/service/layersec-server.toml"
"$SRV" serve --config "$WORK/service/layersec-server.toml" 2>"$WORK/service.log" &
pid=$!
for _ in $(seq 100); do grep -q '"listening"' "$WORK/service.log" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/.*"as4":"\([^"]*\)".*/\1/p' "$WORK/service.log" | head -1)
[ -n "$URL" ] || { echo "demo: the service did not start" >&2; cat "$WORK/service.log" >&2; exit 1; }
echo "Messaging Service at $URL (pid $pid, log: \$DEMO/service.log)"
ADMIN=("$SRV" admin --config "$WORK/service/layersec-server.toml")

say "2. Two businesses install layersec; the provider signs them up and registers their parties"
for party in acme globex; do
  run "$LS" init --party "$party" --service "$URL" --dir "$WORK/$party" \
      --service-cert "$WORK/service/identity/service.crt" --ca-file "$WORK/service/tls/server.crt" \
      --json > "$WORK/$party.init.json" 2>"$WORK/$party.init.log"
  cert=$(field '["certificate"]' < "$WORK/$party.init.json")
  org=$([ "$party" = acme ] && echo "ACME Ltd" || echo "Globex Corporation")
  sub=$(run "${ADMIN[@]}" subscriber add --organisation "$org" --contact "it@$party.example" \
        --contract "LS-2026-$party" --plan standard | field '["id"]')
  run "${ADMIN[@]}" party add --subscriber "$sub" --party "$party" --certificate "$cert" >/dev/null
  echo "$org: subscriber $sub, party '$party', MPC $(field '["mpc"]' < "$WORK/$party.init.json")"
done
echo "The partners exchange certificates (each client checks the other's signature itself):"
run "$LS" partners add globex "$(field '["certificate"]' < "$WORK/globex.init.json")" -c "$WORK/acme/layersec.toml" >/dev/null
run "$LS" partners add acme "$(field '["certificate"]' < "$WORK/acme.init.json")" -c "$WORK/globex/layersec.toml" >/dev/null

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
MID=$(run "$LS" send "$WORK/invoice-2026-0042.xml" --to globex -c "$WORK/acme/layersec.toml")
echo "sent, the service's signed receipt verified; MessageId $MID"

say "4. What the service holds: the AS4 message, its payload sealed for Globex"
# No admin command hands out a message body: the embedded store keeps it in the `messages`
# table of $DEMO/service/data/layersec.db (column `body`; larger ones in data/payloads/,
# named by `body_file`). Read it (read-only), and take the payload part out of the MIME body.
mkdir -p "$WORK/held"
python3 - "$WORK/service/data" "$MID" "$WORK/held" <<'PY'
import os, re, sqlite3, sys
data, mid, out = sys.argv[1:]
db = sqlite3.connect(f"file:{data}/layersec.db?mode=ro", uri=True)
ct, body, body_file = db.execute(
    "SELECT content_type, body, body_file FROM messages WHERE message_id = ?", (mid,)).fetchone()
if body is None:
    body = open(os.path.join(data, "payloads", body_file), "rb").read()
# As a MIME entity: its Content-Type, then the body (what `layersec inspect` reads as AS4).
open(os.path.join(out, "message.as4"), "wb").write(b"Content-Type: " + ct.encode() + b"\r\n\r\n" + body)
boundary = re.search(r'boundary="?([^";]+)"?', ct).group(1).encode()
parts = body.split(b"--" + boundary)[1:-1]
head, _, payload = parts[1].partition(b"\r\n\r\n")
open(os.path.join(out, "payload.p7m"), "wb").write(payload[:-2] if payload.endswith(b"\r\n") else payload)
PY
run "$LS" inspect "$WORK/held/message.as4" > "$WORK/held/message.json"
python3 - "$WORK/held/message.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
um = m["messaging"]["user_messages"][0]
who = lambda p: ", ".join(i["value"] for i in p["party_ids"])
print(f"AS4 UserMessage {um['message_id']}: from {who(um['from'])} to {who(um['to'])}")
sig = m["security"]["signature"]
print(f"  WS-Security signature by {sig['signer']['subject'] if sig.get('signer') else '?'} "
      f"over {len(sig['references'])} references ({sig['signature_method'].rsplit('#', 1)[-1]})")
for p in m["parts"]:
    print(f"  payload part {p['content_id']}: {p['content_type']}, {p['size']} bytes, "
          f"signed: {'yes' if p['signed'] else 'no'}")
PY
echo "The payload as the service, or anyone without a recipient's key, sees it:"
run "$LS" inspect "$WORK/held/payload.p7m" > "$WORK/held/payload.json"
python3 - "$WORK/held/payload.json" "$WORK/held/payload.p7m" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for l in j["layers"]:
    print(f"  {l['layer']}, {l.get('content_encryption')}, {l.get('encrypted_size')} bytes encrypted,"
          f" for {len(l.get('recipients') or [])} recipients:")
    for r in l.get("recipients") or []:
        ids = ", ".join(r["ids"])
        whose = "Globex" if "CN=globex" in ids else "ACME, the sender's own copy" if "CN=acme" in ids else "?"
        print(f"    {whose}: {ids} ({r['type']}, {r['algorithm']})")
held = open(sys.argv[2], "rb").read()
seen = b"2026-0042" in held or b"Globex Corporation" in held
print(f"  the invoice's text in it: {'FOUND' if seen else 'nowhere'}; nothing more is visible without a key")
PY
echo "The same payload opened with Globex's key (as Globex will, checking ACME's signature):"
run "$LS" inspect --key "$WORK/globex/identity/key.pem" --cert "$WORK/globex/identity/cert.pem" \
  --from "$WORK/acme/identity/cert.pem" "$WORK/held/payload.p7m" > "$WORK/held/payload-opened.json"
python3 - "$WORK/held/payload-opened.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
steps = []
for l in j["layers"]:
    kind = l["layer"]
    if kind == "authEnvelopedData":
        steps.append(f"authEnvelopedData ({l['content_encryption']})")
    elif kind == "signedData":
        s = l["signers"][0]
        steps.append(f"signedData (by {s['subject']}, {s['signature']}, "
                     f"{'verified' if l.get('verified') else 'NOT verified'})")
    elif kind == "compressedData":
        steps.append(f"compressedData ({l['algorithm']}, {l['compressed_size']} -> {l['size']} bytes)")
    elif kind == "document":
        steps.append(f"{l.get('filename')} ({l['mime_type']}, {l['size']} bytes)")
print("  " + "\n    -> ".join(steps))
PY
echo "(full reports: \$DEMO/held/*.json)"

say "5. Globex polls: the message is verified, the document opened and written, then receipted"
run "$LS" poll --json -c "$WORK/globex/layersec.toml" > "$WORK/poll.json"
python3 - "$WORK/poll.json" "$WORK/invoice-2026-0042.xml" <<'PY'
import json, sys
docs = [json.loads(l) for l in open(sys.argv[1]) if l.strip() and "summary" not in json.loads(l)]
assert len(docs) == 1, docs
d = docs[0]
sent = open(sys.argv[2], "rb").read()
got = open(d["path"], "rb").read()
assert got == sent, "the opened document differs from the one sent"
print(f"document:        {d['name']} ({d['size']} bytes), written to {d['path']}")
print(f"verified sender: {d['sender']} (S/MIME signature and AS4 signature checked against its certificate)")
print(f"MessageId:       {d['message_id']}")
print(f"signed at:       {d.get('signing_time')}")
print("byte-identical to what ACME sent")
PY

say "6. The receipts"
echo "Globex's client answered the document with a receipt signed by Globex (RFC 2634); ACME polls:"
run "$LS" poll -c "$WORK/acme/layersec.toml"
run "$LS" receipts --json -c "$WORK/acme/layersec.toml" > "$WORK/receipts.json"
python3 - "$WORK/receipts.json" <<'PY'
import json, sys
for d in json.load(open(sys.argv[1]))["receipts"]:
    r = d.get("receipt") or {}
    print(f"ACME's record of Globex's signed receipt of {d['document']}: {d['state']},"
          f" signed by {r.get('signer_subject')}, {'verified' if r.get('verified') else 'NOT verified'},"
          f" Globex stored it at {r.get('received_at')}")
PY
echo "The evidence, checked as an auditor would, with no client state (and by OpenSSL):"
run "$LS" verify-receipt --receipt "$WORK/acme/sent/invoice-2026-0042.xml.receipt.p7m" \
  --original "$WORK/acme/sent/invoice-2026-0042.xml.signed.p7m" --partner "$WORK/globex/identity/cert.pem"
run openssl cms -verify_receipt "$WORK/acme/sent/invoice-2026-0042.xml.receipt.p7m" -rctform DER \
  -in "$WORK/acme/sent/invoice-2026-0042.xml.signed.p7m" -inform DER -CAfile "$WORK/globex/identity/cert.pem"
python3 - "$WORK/acme/sent" <<'PY'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/*.sent.json")):
    r = json.load(open(f))
    print(f"ACME's record of the service's signed receipt ({f.rsplit('/', 1)[-1]}):")
    print(f"  receipt {r.get('receipt_message_id')}, issued {r.get('receipt_time')},"
          f" checked by ACME at {r.get('receipt_checked_at')}")
PY
run "${ADMIN[@]}" messages > "$WORK/messages.json"
python3 - "$WORK/messages.json" <<'PY'
import json, sys
ms = json.load(open(sys.argv[1]))
receipts = {m["receipt_message_id"] for m in ms if m.get("receipt_message_id")}
for m in ms:
    if m["message_id"] in receipts:
        print(f"at the service: {m['message_id']} {m['from']} -> {m['to']}: {m['state']}"
              f" (the end-to-end receipt; pulled by ACME at {m['delivered_at']})")
    else:
        print(f"at the service: {m['message_id']} {m['from']} -> {m['to']}: {m['state']}"
              f" (pulled by Globex at {m['delivered_at']}; Globex's receipt went back at"
              f" {m['receipt_returned_at']})")
PY

say "7. The service is stopped"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
echo "Demo complete. Everything is kept in $WORK:"
echo "  service/ (configuration, keys, data/ store), service.log, acme/ and globex/ (each client:"
echo "  layersec.toml, identity/, sent/, inbox/), held/ (the message as the service held it)."
echo "Remove it with: rm -rf $WORK"
