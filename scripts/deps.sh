#!/usr/bin/env bash
# Install what building and testing need on a fresh Debian 12 machine of the project's kind.
# Idempotent and quick when everything is present; called by `make test`, `make demo` and .ci/run.
set -euo pipefail
need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
dpkg -s pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
have openssl || need_apt+=(openssl)
have gcc || need_apt+=(gcc)
have g++ || need_apt+=(g++)
have valgrind || need_apt+=(valgrind)
have make || need_apt+=(make)
have xmlsec1 || need_apt+=(xmlsec1)
# GNU time: tests bound the peak memory of child processes with it.
[ -x /usr/bin/time ] || need_apt+=(time)
# The anchors of the compression benchmark (scripts/bench-compress.sh).
have pigz || need_apt+=(pigz)
have zstd || need_apt+=(zstd)
# Keys on a PKCS#11 token: SoftHSM2 (the token of tests/pkcs11_softhsm.rs, made in a folder of
# the test's own) and OpenSC's pkcs11-spy.so (counts the PKCS#11 calls: one login, no retry).
have softhsm2-util || need_apt+=(softhsm2)
dpkg -s opensc-pkcs11 >/dev/null 2>&1 || need_apt+=(opensc-pkcs11)
# OpenSC's pkcs11-tool: scripts/softhsm-token.sh puts the bindings' test key on a token with it.
have pkcs11-tool || need_apt+=(opensc)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "deps: installing ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Postfix and Dovecot: the real mail servers of the SOAP-over-e-mail tests (scripts/mail-servers.sh
# runs private instances in a folder of the test's own). Installed without prompts and without
# starting the system's daemons: a temporary policy-rc.d refuses every start (removed afterwards,
# even on failure) and /etc/postfix gets "No configuration".
mail_pkgs=()
for p in postfix dovecot-core dovecot-imapd dovecot-pop3d; do
  dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || mail_pkgs+=("$p")
done
if [ ${#mail_pkgs[@]} -gt 0 ]; then
  echo "deps: installing ${mail_pkgs[*]}" >&2
  # An existing policy-rc.d (Docker images ship one) is set aside and put back afterwards.
  policy=/usr/sbin/policy-rc.d
  saved=
  if [ -e "$policy" ]; then saved=$(mktemp /usr/sbin/.policy-rc.d.XXXXXX); cp -p "$policy" "$saved"; fi
  restore_policy() { if [ -n "$saved" ]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi; }
  trap restore_policy EXIT
  printf '#!/bin/sh\n# scripts/deps.sh: no daemon starts while packages are installed\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be missing or stale on a fresh machine: update only when needed.
  if ! apt-get install -y -qq --no-install-recommends "${mail_pkgs[@]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${mail_pkgs[@]}" >/dev/null
  fi
  restore_policy
  trap - EXIT
fi
# PostgreSQL 15: the database of the distributed Messaging Service's tests (scripts/pg-server.sh
# runs throwaway clusters in a folder of the test's own). Installed without prompts and without
# starting anything: the same temporary policy-rc.d, and postgresql-common is told not to create
# the system's `main` cluster (create_main_cluster = false in createcluster.conf, set after
# postgresql-common and before postgresql-15 is installed). A `main` cluster that exists already
# is left alone and stays stopped.
pg_pkgs=()
for p in postgresql-15 postgresql-client-15; do
  dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || pg_pkgs+=("$p")
done
if [ ${#pg_pkgs[@]} -gt 0 ]; then
  echo "deps: installing ${pg_pkgs[*]}" >&2
  policy=/usr/sbin/policy-rc.d
  saved=
  if [ -e "$policy" ]; then saved=$(mktemp /usr/sbin/.policy-rc.d.XXXXXX); cp -p "$policy" "$saved"; fi
  restore_policy() { if [ -n "$saved" ]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi; }
  trap restore_policy EXIT
  printf '#!/bin/sh\n# scripts/deps.sh: no daemon starts while packages are installed\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  export DEBIAN_FRONTEND=noninteractive
  apt_install() {
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
  }
  dpkg -s postgresql-common 2>/dev/null | grep -q '^Status: install ok installed' || apt_install postgresql-common
  conf=/etc/postgresql-common/createcluster.conf
  if ! grep -Eq '^[[:space:]]*create_main_cluster[[:space:]]*=[[:space:]]*(false|off|no)' "$conf" 2>/dev/null; then
    if grep -Eq '^[[:space:]]*#?[[:space:]]*create_main_cluster' "$conf" 2>/dev/null; then
      sed -i -E 's/^[[:space:]]*#?[[:space:]]*create_main_cluster.*/create_main_cluster = false/' "$conf"
    else
      echo 'create_main_cluster = false' >>"$conf"
    fi
  fi
  apt_install "${pg_pkgs[@]}"
  restore_policy
  trap - EXIT
fi
# The Java binding (bindings/java): Debian's JDK 17 (javac, jar, the JNI headers) and JUnit 5
# (its console launcher in /usr/share/java). No Maven or Gradle: the Makefile calls javac and jar.
java_pkgs=()
for p in openjdk-17-jdk-headless junit5; do
  dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || java_pkgs+=("$p")
done
if [ ${#java_pkgs[@]} -gt 0 ]; then
  echo "deps: installing ${java_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Wait for another apt-get (a parallel job on the same machine) rather than fail at once.
  lock=(-o DPkg::Lock::Timeout=300)
  if ! apt-get "${lock[@]}" install -y -qq --no-install-recommends "${java_pkgs[@]}" >/dev/null 2>&1; then
    apt-get "${lock[@]}" update -qq >/dev/null
    apt-get "${lock[@]}" install -y -qq --no-install-recommends "${java_pkgs[@]}" >/dev/null
  fi
fi
# Mono and NUnit 2.6: build and test the .NET binding (bindings/dotnet, `make test-dotnet`):
# `mcs` (C# 7), the `mono` runtime, `nunit-console` and the NUnit framework assembly. mono-devel
# is not needed (it would add 115 packages); see ../shared/notes/SERVICES.md.
mono_pkgs=()
for p in mono-mcs nunit-console libnunit-cil-dev; do
  dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || mono_pkgs+=("$p")
done
if [ ${#mono_pkgs[@]} -gt 0 ]; then
  echo "deps: installing ${mono_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be missing or stale on a fresh machine: update only when needed.
  if ! apt-get install -y -qq --no-install-recommends "${mono_pkgs[@]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${mono_pkgs[@]}" >/dev/null
  fi
fi
PY=${PYTHON:-python3}
if ! "$PY" -c 'import pytest, asn1crypto, cryptography' >/dev/null 2>&1; then
  echo "deps: installing Python test packages" >&2
  "$PY" -m pip install -q --disable-pip-version-check pytest asn1crypto cryptography
fi
if ! "$PY" -c 'import importlib.metadata as m, xmlsec; assert m.version("as4") == "0.2.0"' >/dev/null 2>&1; then
  echo "deps: installing Python AS4 interop packages" >&2
  "$PY" -m pip install -q --disable-pip-version-check 'as4==0.2.0' xmlsec
fi
# pyas2lib: the AS2 peer of the legacy-as2 profile's interop tests (ls-cli/tests/interop_pyas2lib.rs).
# Pinned; the cryptography already installed is kept (pip then picks a pyOpenSSL that fits it).
if ! "$PY" -c 'import importlib.metadata as m; assert m.version("pyas2lib") == "1.4.4" and m.version("oscrypto") == "1.3.0"' >/dev/null 2>&1; then
  echo "deps: installing pyas2lib (AS2 interop)" >&2
  crypto=$("$PY" -c 'import importlib.metadata as m; print(m.version("cryptography"))')
  "$PY" -m pip install -q --disable-pip-version-check 'pyas2lib==1.4.4' 'oscrypto==1.3.0' "cryptography==$crypto"
fi
# oscrypto 1.3.0 cannot read the version of OpenSSL 3.0.10 and later: patch the installed copy
# (idempotent; fails here, visibly, when the patch no longer applies).
"$PY" "$(dirname "$0")/patch-oscrypto.py"
