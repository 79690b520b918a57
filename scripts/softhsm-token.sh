#!/usr/bin/env bash
# A SoftHSM2 token with one EC P-256 key and its certificate, for the bindings' tests of
# identities on a PKCS#11 token (Python, Java and .NET load it through ls_identity_load_pkcs11):
#
#   scripts/softhsm-token.sh DIR [LABEL]
#
# DIR (made if missing, must hold no token yet) gets softhsm2.conf, tokens/ and LABEL.crt (PEM;
# LABEL defaults to token-party, CN = LABEL). The token "ls-bindings" holds the private key
# (sensitive, sign + derive) and the certificate object, both with label LABEL and id 01.
# Prints, one per line, what a test needs:
#   SOFTHSM2_CONF=DIR/softhsm2.conf   (set it in the process that loads the module, before the
#                                      first load: SoftHSM2 reads it once per process)
#   LS_TOKEN_MODULE=<libsofthsm2.so>
#   LS_TOKEN_PIN=<the user PIN>
#   LS_TOKEN_URI=pkcs11:token=ls-bindings;object=LABEL;type=private
#   LS_TOKEN_CERT=DIR/LABEL.crt
# Exit status 3 (with the reason on stderr) when SoftHSM2, OpenSC's pkcs11-tool or openssl is
# missing, so a test can skip (or fail under LS_REQUIRE_FIXTURES=1); other failures exit 1.
#
# The key is made by openssl in a file of DIR (mode 0600), imported with pkcs11-tool and the
# file removed: SoftHSM2 cannot sign a certificate for a key it generated without our library
# (OpenSSL's PKCS#11 engine/provider is not in Debian 12). `layersec keygen --pkcs11` makes the
# key on the token and the certificate from it, but the bindings' tests do not depend on the
# command-line binary; generation on a token is tested in Rust (tests/pkcs11_softhsm.rs,
# ls-cli/tests/pkcs11_keygen.rs).
set -euo pipefail
DIR=${1:?usage: softhsm-token.sh DIR [LABEL]}
LABEL=${2:-token-party}
TOKEN=ls-bindings
PIN=4711-layersec
SO_PIN=0815-layersec-so

missing() { echo "softhsm-token: $1 (scripts/deps.sh installs it)" >&2; exit 3; }
MODULE=
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
  /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so; do
  if [ -f "$m" ]; then MODULE=$m; break; fi
done
[ -n "$MODULE" ] || missing "SoftHSM2's libsofthsm2.so is not installed (package softhsm2)"
command -v softhsm2-util >/dev/null || missing "softhsm2-util is not on PATH (package softhsm2)"
command -v pkcs11-tool >/dev/null || missing "pkcs11-tool is not on PATH (package opensc)"
command -v openssl >/dev/null || missing "openssl is not on PATH (package openssl)"

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
[ ! -e "$DIR/tokens" ] || { echo "softhsm-token: $DIR/tokens exists already" >&2; exit 1; }
mkdir "$DIR/tokens"
export SOFTHSM2_CONF="$DIR/softhsm2.conf"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
  "$DIR/tokens" >"$SOFTHSM2_CONF"

log="$DIR/softhsm-token.log"
run() { "$@" >>"$log" 2>&1 || { echo "softhsm-token: failed: $1 (see $log)" >&2; cat "$log" >&2; exit 1; }; }
run softhsm2-util --init-token --free --label "$TOKEN" --pin "$PIN" --so-pin "$SO_PIN"

umask 077
key="$DIR/.key-$LABEL.pem"
cert="$DIR/$LABEL.crt"
trap 'rm -f "$key" "$DIR/.cert.der"' EXIT
run openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$key" \
  -out "$cert" -days 30 -subj "/CN=$LABEL" \
  -addext 'keyUsage=critical,digitalSignature,nonRepudiation,keyAgreement' \
  -addext 'basicConstraints=critical,CA:FALSE'
run openssl x509 -in "$cert" -outform DER -out "$DIR/.cert.der"
p11=(pkcs11-tool --module "$MODULE" --token-label "$TOKEN" --login --pin "$PIN")
run "${p11[@]}" --write-object "$key" --type privkey --id 01 --label "$LABEL" \
  --usage-sign --usage-derive
run "${p11[@]}" --write-object "$DIR/.cert.der" --type cert --id 01 --label "$LABEL"
chmod 0644 "$cert"

echo "SOFTHSM2_CONF=$SOFTHSM2_CONF"
echo "LS_TOKEN_MODULE=$MODULE"
echo "LS_TOKEN_PIN=$PIN"
echo "LS_TOKEN_URI=pkcs11:token=$TOKEN;object=$LABEL;type=private"
echo "LS_TOKEN_CERT=$cert"
