#!/usr/bin/env bash
# Private, throwaway Postfix + Dovecot instances for the SOAP-over-e-mail tests: every file of an
# instance (configuration, queue, mail, logs, TLS keys) lives in one folder DIR; the daemons listen
# on 127.0.0.1 only and relay nothing. /etc/postfix and /etc/dovecot are not read or touched.
# Needs root and the packages postfix, dovecot-core, dovecot-imapd, dovecot-pop3d (scripts/deps.sh).
#
#   scripts/mail-servers.sh start DIR [options]   make DIR (if needed), configure, start, wait until
#                                                  every port listens; prints KEY=value lines
#   scripts/mail-servers.sh stop DIR              stop the instance of DIR (DIR is kept)
#   scripts/mail-servers.sh adduser DIR NAME PW   add (or re-password) NAME@example.test while running
#   scripts/mail-servers.sh size-limit DIR BYTES  change message_size_limit while running
#   scripts/mail-servers.sh deliver DIR NAME FILE put FILE into NAME's Maildir (new/) without SMTP
#   scripts/mail-servers.sh status DIR            KEY=value lines of DIR (exit 1 when not running)
#
# Options of start (or the environment variable in brackets; defaults in parentheses):
#   --smtp PORT     submission, STARTTLS, AUTH only after TLS [MAIL_SMTP_PORT] (2525)
#   --smtps PORT    submission, implicit TLS                  [MAIL_SMTPS_PORT] (2465)
#   --imap PORT     IMAP, STARTTLS                            [MAIL_IMAP_PORT] (1143)
#   --imaps PORT    IMAP, implicit TLS                        [MAIL_IMAPS_PORT] (1993)
#   --pop3 PORT     POP3, STLS                                [MAIL_POP3_PORT] (1110)
#   --pop3s PORT    POP3, implicit TLS                        [MAIL_POP3S_PORT] (1995)
#   --size-limit N  Postfix message_size_limit in bytes       [MAIL_SIZE_LIMIT] (67108864)
#   --user NAME:PW  a user made at start (repeatable); without any, alice:alice-pw and bob:bob-pw
#   --no-default-users   no alice and bob
#
# Users and addresses: NAME@example.test. The login name (IMAP, POP3, SMTP AUTH) is the full
# address; the bare NAME works too (Dovecot's auth_default_realm). Mail of NAME is the Maildir
# DIR/mail/NAME (new/, cur/, tmp/; owned by uid/gid 8, Debian's `mail`). Passwords: one Dovecot
# passwd-file a user, DIR/dovecot/users.d/NAME@example.test, holding
# `NAME@example.test:{PLAIN}PW:8:8::DIR/mail/NAME::`. Mail to an unknown
# NAME@example.test is refused at RCPT TO (550 5.1.1). Any address @bounce.test is accepted from an
# authenticated sender and then bounced by Postfix: a DSN (multipart/report, RFC 3464) from
# MAILER-DAEMON@mail.example.test lands in the sender's Maildir when the sender is a local user.
# DIR/ca.pem signed the server certificate (SAN localhost, 127.0.0.1, ::1); DIR/other-ca.pem is a
# CA that did not. Logs: DIR/postfix.log, DIR/dovecot.log.
#
# Exit status: 0 done; 1 failed; 2 usage; 3 cannot run here (packages missing, not root); 4 a port
# of start is in use.
#
# DIR and every folder above it must be world-traversable (o+x): the mail user, Dovecot's auth and
# Postfix cross it. `start` makes DIR 0755.
set -euo pipefail

DOMAIN=example.test
BOUNCE_DOMAIN=bounce.test
MAIL_UID=8
MAIL_GID=8

die() { echo "mail-servers: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }

# Postfix and Dovecot sleep up to 2 s when a configuration file or a lookup table is younger than
# a second: every file they read is back-dated.
backdate() { touch -d '-10 seconds' "$@"; }

now_ms() { date +%s%3N; }

# Whether TCP port $1 is in LISTEN state on 127.0.0.1 (read from /proc: a probe connection would
# leave "lost connection" lines in the logs).
listening() {
  local hex
  hex=$(printf '%04X' "$1")
  grep -q "^ *[0-9]*: 0100007F:$hex 00000000:0000 0A " /proc/net/tcp
}

# Whether process $1 exists and is not a zombie.
alive() {
  local st
  [ -r "/proc/$1/stat" ] || return 1
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# The start time (in clock ticks) of process $1: with the PID it names one process for certain.
starttime() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }

# The PID in file $1 if that process runs and its command line or environment names folder $2.
owned_pid() {
  local f=$1 dir=$2 pid
  [ -r "$f" ] || return 1
  pid=$(tr -dc '0-9' <"$f")
  [ -n "$pid" ] && alive "$pid" || return 1
  if tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/" ||
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qF "MAIL_CONFIG=$dir/"; then
    echo "$pid"
  else
    return 1
  fi
}

# PID and start time of $1 and all its descendants, one "pid:starttime" a line.
tree() {
  local pid=$1 child
  echo "$pid:$(starttime "$pid")"
  for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do tree "$child"; done
}

dovecot_pid() { owned_pid "$1/dovecot/run/master.pid" "$1"; }
postfix_pid() { owned_pid "$1/postfix/spool/pid/master.pid" "$1"; }

check_packages() {
  local missing=()
  [ -x /usr/sbin/postfix ] || missing+=(postfix)
  [ -x /usr/sbin/dovecot ] || missing+=(dovecot-core)
  [ -x /usr/lib/dovecot/imap ] || missing+=(dovecot-imapd)
  [ -x /usr/lib/dovecot/pop3 ] || missing+=(dovecot-pop3d)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "mail-servers: not installed: ${missing[*]} (run scripts/deps.sh)" >&2
    exit 3
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "mail-servers: must run as root (Postfix and Dovecot start as root and drop privileges)" >&2
    exit 3
  fi
}

valid_name() { [[ $1 =~ ^[a-z0-9][a-z0-9._+-]*$ ]] || die "bad user name '$1' (lower-case letters, digits, . _ + -)"; }

# NAME PASSWORD: the passwd-file of NAME (replaced if present), its Maildir, and Postfix's
# recipient table (re-read by Postfix on `postfix reload`, done by the caller when running).
# One passwd-file a user, DIR/dovecot/users.d/NAME@example.test: Dovecot checks a passwd-file for
# changes at most once a second, so a line added to one shared file could stay unseen for up to a
# second; a new file is read at its first lookup.
add_user() {
  local dir=$1 name=$2 pw=$3 file tmp
  valid_name "$name"
  [[ $pw != *:* && $pw != *$'\n'* ]] || die "a password may not contain ':' or a newline"
  file=$dir/dovecot/users.d/$name@$DOMAIN
  tmp=$(mktemp "$dir/dovecot/users.d/.new.XXXXXX")
  echo "$name@$DOMAIN:{PLAIN}$pw:$MAIL_UID:$MAIL_GID::$dir/mail/$name::" >"$tmp"
  chmod 0644 "$tmp"
  if [ -e "$file" ] && [ -n "${RUNNING:-}" ]; then
    # A new password for a known user: Dovecot may have read the old file within this second.
    mv -f "$tmp" "$file"
    sleep 1.1
  else
    mv -f "$tmp" "$file"
  fi
  install -d -o "$MAIL_UID" -g "$MAIL_GID" -m 0700 "$dir/mail/$name" "$dir/mail/$name/new" "$dir/mail/$name/cur" "$dir/mail/$name/tmp"
  tmp=$(mktemp "$dir/postfix/etc/.vmailbox.XXXXXX")
  { awk -v n="$name/" '$2 != n' "$dir/postfix/etc/vmailbox.regexp" 2>/dev/null || true
    local re=${name//./\\.}
    re=${re//+/\\+}
    echo "/^$re@example\\.test\$/ $name/"
  } >"$tmp"
  chmod 0644 "$tmp"
  backdate "$tmp"
  mv -f "$tmp" "$dir/postfix/etc/vmailbox.regexp"
}

# Postfix re-reads main.cf, master.cf and its tables: SIGHUP to its master (as `postfix reload`,
# without the checks that take a second).
postfix_reload() {
  local pid
  pid=$(postfix_pid "$1") || die "Postfix of $1 is not running"
  kill -HUP "$pid"
}

make_tls() {
  local dir=$1 t=$1/tls
  [ -s "$dir/ca.pem" ] && [ -s "$t/server.pem" ] && [ -s "$dir/other-ca.pem" ] && return 0
  install -d -m 0755 "$t"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "$t/ca.key" -out "$dir/ca.pem" -days 3650 \
    -subj "/CN=Layer Security test mail CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -x509 "${ec[@]}" -keyout "$t/other-ca.key" -out "$dir/other-ca.pem" -days 3650 \
    -subj "/CN=Layer Security test mail CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -new "${ec[@]}" -keyout "$t/server.key" -out "$t/server.csr" -subj "/CN=localhost" 2>/dev/null
  printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
    'extendedKeyUsage=serverAuth' 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1' >"$t/server.ext"
  openssl x509 -req -in "$t/server.csr" -CA "$dir/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
    -days 3650 -extfile "$t/server.ext" -out "$t/server.crt" 2>/dev/null
  cat "$t/server.crt" "$dir/ca.pem" >"$t/server.pem"
  chmod 0644 "$dir/ca.pem" "$dir/other-ca.pem" "$t/server.pem"
  chmod 0600 "$t"/*.key
}

write_postfix() {
  local dir=$1 etc=$1/postfix/etc
  # The queue folder belongs to root; data/ and the queue's subfolders are made by `postfix check`
  # (owned by postfix: folders made here by root would make the master fail on its lock file).
  install -d -m 0755 "$etc" "$dir/postfix/spool"
  cat >"$etc/main.cf" <<EOF
# A private Postfix of scripts/mail-servers.sh; every path in $dir.
compatibility_level = 3.6
queue_directory = $dir/postfix/spool
data_directory = $dir/postfix/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $dir/postfix.log
maillog_file_prefixes = $dir
syslog_name = postfix-ls-$SMTP_PORT
myhostname = mail.$DOMAIN
mydomain = $DOMAIN
myorigin = \$myhostname
inet_interfaces = loopback-only
inet_protocols = ipv4
# Nothing leaves this machine: no local delivery, no relay, no remote transport.
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 local delivery is disabled
alias_maps =
alias_database =
relayhost =
default_transport = error:5.7.1 this test server relays nothing
relay_transport = error:5.7.1 this test server relays nothing
relay_domains = $BOUNCE_DOMAIN
relay_recipient_maps =
transport_maps = regexp:$etc/transport.regexp
# Users' mail: Maildirs owned by uid/gid 8 (mail).
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_base = $dir/mail
virtual_mailbox_maps = regexp:$etc/vmailbox.regexp
virtual_uid_maps = static:$MAIL_UID
virtual_gid_maps = static:$MAIL_GID
virtual_minimum_uid = $MAIL_UID
virtual_mailbox_limit = 0
mailbox_size_limit = 0
message_size_limit = $SIZE_LIMIT
# Submission only: authenticated (Dovecot SASL, after TLS) or refused.
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_auth_enable = yes
smtpd_tls_auth_only = yes
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtpd_tls_cert_file = $dir/tls/server.pem
smtpd_tls_key_file = $dir/tls/server.key
smtpd_tls_security_level = may
smtpd_tls_loglevel = 0
smtpd_banner = \$myhostname ESMTP Layer Security test server
anvil_rate_time_unit = 60s
smtpd_client_connection_rate_limit = 0
smtpd_client_auth_rate_limit = 0
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
biff = no
readme_directory = no
append_dot_mydomain = no
delay_warning_time = 0
notify_classes =
bounce_notice_recipient = postmaster@$DOMAIN
EOF
  # chroot n everywhere: nothing of /etc needs copying into a jail.
  cat >"$etc/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
  -o syslog_name=postfix-ls-$SMTP_PORT/submission
  -o smtpd_tls_security_level=encrypt
127.0.0.1:$SMTPS_PORT inet n - n - - smtpd
  -o syslog_name=postfix-ls-$SMTP_PORT/smtps
  -o smtpd_tls_wrappermode=yes
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
# The bounce domain: smtpd refuses at RCPT a recipient routed to the error(8) transport, so a pipe
# that fails for good (EX_NOUSER) takes the mail instead, and Postfix returns a DSN to the sender.
bouncer   unix  -       n       n       -       -       pipe
  flags=q user=nobody argv=/bin/sh -c { echo "mailbox unavailable (the bounce domain of the test server)"; exit 67 }
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
  printf '%s\n' "/@${BOUNCE_DOMAIN//./\\.}\$/ bouncer:" >"$etc/transport.regexp"
  touch "$etc/vmailbox.regexp"
  chmod 0644 "$etc"/*
  backdate "$etc"/*
}

write_dovecot() {
  local dir=$1 d=$1/dovecot
  install -d -m 0755 "$d" "$d/state"
  # A stale base_dir keeps the old anvil penalty state: start clean.
  rm -rf "$d/run"
  install -d -m 0755 "$d/users.d"
  cat >"$d/dovecot.conf" <<EOF
# A private Dovecot of scripts/mail-servers.sh; every path in $dir.
instance_name = ls-mail-$IMAP_PORT
base_dir = $d/run
state_dir = $d/state
log_path = $dir/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <$dir/tls/server.pem
ssl_key = <$dir/tls/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_default_realm = $DOMAIN
auth_failure_delay = 0
auth_cache_size = 0
auth_verbose = yes
first_valid_uid = $MAIL_UID
last_valid_uid = $MAIL_UID
first_valid_gid = $MAIL_GID
mail_location = maildir:~
pop3_uidl_format = %08Xu%08Xv
shutdown_clients = yes
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $d/users.d/%u
}
userdb {
  driver = passwd-file
  args = username_format=%u $d/users.d/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $POP3_PORT
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = $POP3S_PORT
    ssl = yes
  }
}
service auth {
  unix_listener $dir/postfix/spool/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
# No login penalty after a wrong password (it slows the next logins by seconds).
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service stats {
  unix_listener stats-reader {
    mode = 0600
  }
  unix_listener stats-writer {
    mode = 0666
  }
}
EOF
  chmod 0644 "$d/dovecot.conf"
  backdate "$d/dovecot.conf"
}

print_status() {
  local dir=$1
  # shellcheck disable=SC1091
  . "$dir/ports.env"
  cat <<EOF
MAIL_DIR=$dir
SMTP_PORT=$SMTP_PORT
SMTPS_PORT=$SMTPS_PORT
IMAP_PORT=$IMAP_PORT
IMAPS_PORT=$IMAPS_PORT
POP3_PORT=$POP3_PORT
POP3S_PORT=$POP3S_PORT
SMTP_URL=smtp://127.0.0.1:$SMTP_PORT
SMTPS_URL=smtps://127.0.0.1:$SMTPS_PORT
IMAP_URL=imap://127.0.0.1:$IMAP_PORT
IMAPS_URL=imaps://127.0.0.1:$IMAPS_PORT
POP3_URL=pop3://127.0.0.1:$POP3_PORT
POP3S_URL=pop3s://127.0.0.1:$POP3S_PORT
CA_PEM=$dir/ca.pem
OTHER_CA_PEM=$dir/other-ca.pem
DOMAIN=$DOMAIN
BOUNCE_DOMAIN=$BOUNCE_DOMAIN
MAIL_ROOT=$dir/mail
USERS_DIR=$dir/dovecot/users.d
SIZE_LIMIT=$(postconf -c "$dir/postfix/etc" -h message_size_limit)
POSTFIX_LOG=$dir/postfix.log
DOVECOT_LOG=$dir/dovecot.log
POSTFIX_PID=$(postfix_pid "$dir" || echo)
DOVECOT_PID=$(dovecot_pid "$dir" || echo)
EOF
}

cmd_start() {
  [ $# -ge 1 ] || usage
  local dir=$1; shift
  SMTP_PORT=${MAIL_SMTP_PORT:-2525} SMTPS_PORT=${MAIL_SMTPS_PORT:-2465}
  IMAP_PORT=${MAIL_IMAP_PORT:-1143} IMAPS_PORT=${MAIL_IMAPS_PORT:-1993}
  POP3_PORT=${MAIL_POP3_PORT:-1110} POP3S_PORT=${MAIL_POP3S_PORT:-1995}
  SIZE_LIMIT=${MAIL_SIZE_LIMIT:-67108864}
  local users=() defaults=1
  while [ $# -gt 0 ]; do
    case $1 in
      --smtp) SMTP_PORT=$2; shift 2 ;;
      --smtps) SMTPS_PORT=$2; shift 2 ;;
      --imap) IMAP_PORT=$2; shift 2 ;;
      --imaps) IMAPS_PORT=$2; shift 2 ;;
      --pop3) POP3_PORT=$2; shift 2 ;;
      --pop3s) POP3S_PORT=$2; shift 2 ;;
      --size-limit) SIZE_LIMIT=$2; shift 2 ;;
      --user) users+=("$2"); shift 2 ;;
      --no-default-users) defaults=; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  check_packages
  local t0 p
  t0=$(now_ms)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  chmod 0755 "$dir"
  # Every folder above DIR must be traversable by the mail user, Dovecot and Postfix.
  p=$dir
  while [ "$p" != / ]; do
    p=$(dirname "$p")
    [ "$(( 0$(stat -c %a "$p") & 1 ))" = 1 ] || die "$p is not world-traversable (o+x): choose DIR elsewhere (e.g. under /tmp)"
  done
  if postfix_pid "$dir" >/dev/null || dovecot_pid "$dir" >/dev/null; then
    die "an instance already runs in $dir (stop it first)"
  fi
  for p in "$SMTP_PORT" "$SMTPS_PORT" "$IMAP_PORT" "$IMAPS_PORT" "$POP3_PORT" "$POP3S_PORT"; do
    [[ $p =~ ^[0-9]+$ ]] && [ "$p" -gt 0 ] && [ "$p" -lt 65536 ] || die "bad port '$p'"
    if listening "$p"; then echo "mail-servers: port $p of 127.0.0.1 is already in use" >&2; exit 4; fi
  done
  install -d -o "$MAIL_UID" -g "$MAIL_GID" -m 0755 "$dir/mail"
  make_tls "$dir"
  write_postfix "$dir"
  write_dovecot "$dir"
  cat >"$dir/ports.env" <<EOF
SMTP_PORT=$SMTP_PORT
SMTPS_PORT=$SMTPS_PORT
IMAP_PORT=$IMAP_PORT
IMAPS_PORT=$IMAPS_PORT
POP3_PORT=$POP3_PORT
POP3S_PORT=$POP3S_PORT
EOF
  if [ ${#users[@]} -eq 0 ] && [ -n "$defaults" ]; then users=(alice:alice-pw bob:bob-pw); fi
  local u
  for u in ${users[@]+"${users[@]}"}; do add_user "$dir" "${u%%:*}" "${u#*:}"; done
  touch "$dir/postfix.log" "$dir/dovecot.log"
  # `postfix start` runs `postfix check` first, which makes the queue's folders (owned by postfix),
  # private/ among them, where Dovecot puts its auth socket: Postfix starts first.
  # Daemons must not keep the caller's stdout/stderr (a CI pipe would never close).
  postfix -c "$dir/postfix/etc" start </dev/null >>"$dir/postfix.log" 2>&1 ||
    { tail -n 20 "$dir/postfix.log" >&2; die "postfix did not start (see $dir/postfix.log)"; }
  dovecot -c "$dir/dovecot/dovecot.conf" </dev/null >>"$dir/dovecot.log" 2>&1 ||
    { tail -n 20 "$dir/dovecot.log" >&2; cmd_stop "$dir" >/dev/null 2>&1 || true; die "dovecot did not start (see $dir/dovecot.log)"; }
  local deadline=$(( $(now_ms) + 15000 )) ready
  while :; do
    ready=1
    for p in "$SMTP_PORT" "$SMTPS_PORT" "$IMAP_PORT" "$IMAPS_PORT" "$POP3_PORT" "$POP3S_PORT"; do
      listening "$p" || { ready=; break; }
    done
    [ -n "$ready" ] && [ -S "$dir/postfix/spool/private/auth" ] && break
    if [ "$(now_ms)" -gt "$deadline" ]; then
      tail -n 20 "$dir/postfix.log" "$dir/dovecot.log" >&2
      cmd_stop "$dir" >/dev/null 2>&1 || true
      die "not ready after 15 s (port $p)"
    fi
    sleep 0.02
  done
  print_status "$dir"
  echo "START_MS=$(( $(now_ms) - t0 ))"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local dir t0 pids=() pf dv entry pid st deadline left
  dir=$(cd "$1" 2>/dev/null && pwd -P) || { echo "STOP_MS=0"; return 0; }
  t0=$(now_ms)
  pf=$(postfix_pid "$dir" || true)
  dv=$(dovecot_pid "$dir" || true)
  # Every process of the instance, recorded before the masters go (children outlive them briefly).
  for pid in $pf $dv; do mapfile -t -O "${#pids[@]}" pids < <(tree "$pid"); done
  # SIGTERM to every process of both trees at once, masters first: the Dovecot master alone takes
  # about 1.1 s to shut its children down; with them signalled too it is gone in about 15 ms.
  for entry in ${pids[@]+"${pids[@]}"}; do kill -TERM "${entry%%:*}" 2>/dev/null || true; done
  # A stopped master lingers as a zombie until PID 1 reaps it: a zombie counts as stopped.
  deadline=$(( $(now_ms) + 5000 ))
  while :; do
    left=
    for entry in ${pids[@]+"${pids[@]}"}; do
      pid=${entry%%:*} st=${entry#*:}
      alive "$pid" && [ "$(starttime "$pid")" = "$st" ] && { left=1; break; }
    done
    [ -z "$left" ] && break
    [ "$(now_ms)" -gt "$deadline" ] && break
    sleep 0.02
  done
  # Leftovers of this instance only (same PID and start time as recorded): SIGKILL.
  for entry in ${pids[@]+"${pids[@]}"}; do
    pid=${entry%%:*} st=${entry#*:}
    if alive "$pid" && [ "$(starttime "$pid")" = "$st" ]; then
      echo "mail-servers: killing leftover process $pid" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -f "$dir/postfix/spool/pid/master.pid" "$dir/dovecot/run/master.pid"
  echo "STOP_MS=$(( $(now_ms) - t0 ))"
}

cmd_adduser() {
  [ $# -eq 3 ] || usage
  local dir
  dir=$(cd "$1" && pwd -P) || die "no folder $1"
  local name=${2%@"$DOMAIN"}
  if postfix_pid "$dir" >/dev/null; then RUNNING=1; fi
  add_user "$dir" "$name" "$3"
  if postfix_pid "$dir" >/dev/null; then postfix_reload "$dir"; fi
  echo "ADDRESS=$name@$DOMAIN"
  echo "MAILDIR=$dir/mail/$name"
}

cmd_size_limit() {
  [ $# -eq 2 ] || usage
  local dir
  dir=$(cd "$1" && pwd -P) || die "no folder $1"
  [[ $2 =~ ^[0-9]+$ ]] || die "bad size '$2'"
  postconf -c "$dir/postfix/etc" -e "message_size_limit = $2"
  backdate "$dir/postfix/etc/main.cf"
  if postfix_pid "$dir" >/dev/null; then postfix_reload "$dir"; fi
  echo "SIZE_LIMIT=$2"
}

cmd_deliver() {
  [ $# -eq 3 ] || usage
  local dir name=${3%@"$DOMAIN"} md tmp final
  dir=$(cd "$1" && pwd -P) || die "no folder $1"
  name=${2%@"$DOMAIN"}
  md=$dir/mail/$name
  [ -d "$md/new" ] || die "no user $name in $dir"
  final="$(date +%s).M$(date +%N)P$$R$RANDOM.ls-test"
  tmp=$md/tmp/$final
  cp "$3" "$tmp"
  chown "$MAIL_UID:$MAIL_GID" "$tmp"
  chmod 0600 "$tmp"
  mv "$tmp" "$md/new/$final"
  echo "DELIVERED=$md/new/$final"
}

cmd_status() {
  [ $# -eq 1 ] || usage
  local dir
  dir=$(cd "$1" && pwd -P) || die "no folder $1"
  [ -r "$dir/ports.env" ] || die "no instance in $dir"
  print_status "$dir"
  postfix_pid "$dir" >/dev/null && dovecot_pid "$dir" >/dev/null
}

[ $# -ge 1 ] || usage
cmd=$1; shift
case $cmd in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  adduser) cmd_adduser "$@" ;;
  size-limit) cmd_size_limit "$@" ;;
  deliver) cmd_deliver "$@" ;;
  status) cmd_status "$@" ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
