#!/usr/bin/env bash
# SOAP over e-mail against real Postfix + Dovecot: latency from send to the recipient's inbox
# (IMAP IDLE vs polling) and the service gateway's throughput against plain IMAP + SMTP of the
# same bytes, in the same run (scripts/bench-email.py says what is inside each clock).
#   N=100 M=200 SIZE=10240 bash scripts/bench-email.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build -q --release -p ls-cli -p ls-server --bin layersec --bin layersec-server
exec python3 scripts/bench-email.py "${CARGO_TARGET_DIR:-target}/release"
