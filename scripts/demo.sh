#!/usr/bin/env bash
# The main job on the embedded defaults (until the Messaging Service exists): two parties get
# identities, ACME seals a sample invoice for Globex, Globex opens it and proves who sent it.
set -euo pipefail
BIN=${1:-target/release}
LS="$BIN/layersec"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/layersec-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
say() { printf '\n== %s\n' "$*"; }

say "1. Two parties generate their identities (key, self-signed certificate, CSR)"
"$LS" keygen --party acme   --out "$WORK/acme"   --key-type rsa
"$LS" keygen --party globex --out "$WORK/globex" --key-type ec
# They exchange certificates (in production: registered with the Messaging Service provider).
mkdir -p "$WORK/acme/partners" "$WORK/globex/partners"
cp "$WORK/globex/globex.cert.pem" "$WORK/acme/partners/globex.pem"
cp "$WORK/acme/acme.cert.pem"     "$WORK/globex/partners/acme.pem"

say "2. ACME's accounting system drops an invoice; layersec compresses, signs and encrypts it for Globex"
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
"$LS" seal --sign-key "$WORK/acme/acme.key.pem" --sign-cert "$WORK/acme/acme.cert.pem" \
    --to "$WORK/acme/partners/globex.pem" "$WORK/invoice-2026-0042.xml" "$WORK/invoice.p7m"
echo "sealed: $(stat -c %s "$WORK/invoice.p7m") bytes"

say "3. What travels (layersec inspect, no keys: only the envelope is visible)"
"$LS" inspect "$WORK/invoice.p7m" | head -30

say "4. Globex opens it, verifying that ACME signed it"
"$LS" open --key "$WORK/globex/globex.key.pem" --cert "$WORK/globex/globex.cert.pem" \
    --from "$WORK/globex/partners/acme.pem" --json "$WORK/invoice.p7m" "$WORK/received.xml"
cmp "$WORK/invoice-2026-0042.xml" "$WORK/received.xml"
echo "the opened document is byte-identical to the one ACME sent"

say "5. A forger cannot pass as ACME"
"$LS" keygen --party mallory --out "$WORK/mallory" >/dev/null
"$LS" seal --sign-key "$WORK/mallory/mallory.key.pem" --sign-cert "$WORK/mallory/mallory.cert.pem" \
    --to "$WORK/acme/partners/globex.pem" "$WORK/invoice-2026-0042.xml" "$WORK/forged.p7m"
set +e
"$LS" open --key "$WORK/globex/globex.key.pem" --cert "$WORK/globex/globex.cert.pem" \
    --from "$WORK/globex/partners/acme.pem" "$WORK/forged.p7m" "$WORK/forged.xml"
rc=$?
set -e
[ "$rc" -ne 0 ] && [ ! -e "$WORK/forged.xml" ] || { echo "demo: the forgery was not refused" >&2; exit 1; }
echo "refused with exit code $rc, nothing written"
say "Demo complete"
