#!/usr/bin/env bash
# A private, throwaway PostgreSQL 15 cluster for the tests of the distributed Messaging Service:
# every file of the cluster (data, socket, log, TLS keys, password) lives in one folder DIR; it
# listens on 127.0.0.1 only, on a port of its own. The system's clusters (/etc/postgresql,
# /var/lib/postgresql) are not read, touched or started.
# Needs root and the packages postgresql-15, postgresql-client-15 (scripts/deps.sh).
#
#   scripts/pg-server.sh start DIR [options]  make DIR (if needed), initdb (once), start, wait until
#                                              it accepts connections; prints KEY=value lines.
#                                              A DIR with a cluster in it is started again (same
#                                              port and TLS as before, crash recovery if needed).
#   scripts/pg-server.sh stop DIR             fast shutdown (DIR is kept)
#   scripts/pg-server.sh restart DIR          stop, then start again
#   scripts/pg-server.sh kill9 DIR            SIGKILL to every process of the cluster (a crash)
#   scripts/pg-server.sh sql DIR SQL [DB]     run SQL with psql as the superuser `postgres` over
#                                              the unix socket in DB (layersec); prints the rows
#                                              unaligned, fields separated by '|'
#   scripts/pg-server.sh status DIR           KEY=value lines of DIR (exit 1 when not running)
#
# Options of start (or the environment variable in brackets; defaults in parentheses):
#   --port PORT   TCP port on 127.0.0.1   [PG_PORT] (5433)
#   --tls         TLS: a throwaway CA (DIR/ca.pem) signed the server's certificate (SAN
#                 localhost, 127.0.0.1); the role `layersec` must then use TLS over TCP
#   --durable     fsync on and full_page_writes on (PostgreSQL's defaults: a commit is on disk
#                 before it is acknowledged), for benchmarks; not for the tests
#   --stats       load pg_stat_statements (shared_preload_libraries) and create the extension in
#                 the database `layersec`, for benchmarks counting statements
# --durable and --stats are settings of a new cluster: a DIR started before keeps its own.
#
# Roles, database, authentication:
#   layersec   password `layersec-pw` (scram-sha-256) over TCP, owner of the database `layersec`.
#              Its URL: postgres://layersec@127.0.0.1:PORT/layersec; the password alone (no newline)
#              is in DIR/password, and DIR/pgpass is a libpq password file (PGPASSFILE) for it.
#              With --tls only TLS connections (hostssl) are accepted for it.
#   postgres   the superuser: trust over the unix socket in DIR/run only; refused over TCP.
#   any other role (made by a test): trust over the socket and over TCP from 127.0.0.1.
# Settings: fsync off and full_page_writes off (speed only: a crash of PostgreSQL, unlike one of
# the machine, loses nothing; --durable turns both on), synchronous_commit on, max_connections
# 100. Log: DIR/server.log.
#
# Exit status: 0 done; 1 failed; 2 usage; 3 cannot run here (packages missing, not root); 4 the
# port is in use.
#
# DIR and every folder above it must be world-traversable (o+x): the server runs as `postgres`.
set -euo pipefail

BIN=/usr/lib/postgresql/15/bin
ROLE=layersec
PASSWORD=layersec-pw
DB=layersec

die() { echo "pg-server: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
now_ms() { date +%s%3N; }

# Whether TCP port $1 is in LISTEN state on 127.0.0.1 (read from /proc, no probe connection).
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

# PID and start time of $1 and all its descendants, one "pid:starttime" a line.
tree() {
  local pid=$1 child
  echo "$pid:$(starttime "$pid")"
  for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do tree "$child"; done
}

# The postmaster of DIR: the PID of DIR/data/postmaster.pid if that process runs PostgreSQL's
# binary with DIR/data as its data folder.
postmaster_pid() {
  local dir=$1 pid
  [ -r "$dir/data/postmaster.pid" ] || return 1
  pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null | tr -dc '0-9')
  [ -n "$pid" ] && alive "$pid" || return 1
  [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$BIN/postgres" ] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$dir/data" || return 1
  echo "$pid"
}

check_packages() {
  local missing=()
  [ -x "$BIN/postgres" ] && [ -x "$BIN/initdb" ] || missing+=(postgresql-15)
  [ -x "$BIN/psql" ] || missing+=(postgresql-client-15)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "pg-server: not installed: ${missing[*]} (run scripts/deps.sh)" >&2
    exit 3
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "pg-server: must run as root (the server runs as the user postgres)" >&2
    exit 3
  fi
  id -u postgres >/dev/null 2>&1 || { echo "pg-server: no user postgres" >&2; exit 3; }
}

make_tls() {
  local dir=$1 t=$1/tls
  [ -s "$dir/ca.pem" ] && [ -s "$t/server.crt" ] && [ -s "$t/server.key" ] && return 0
  install -d -m 0755 "$t"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "$t/ca.key" -out "$dir/ca.pem" -days 3650 \
    -subj "/CN=Layer Security test PostgreSQL CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -x509 "${ec[@]}" -keyout "$t/other-ca.key" -out "$dir/other-ca.pem" -days 3650 \
    -subj "/CN=Layer Security test PostgreSQL CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -new "${ec[@]}" -keyout "$t/server.key" -out "$t/server.csr" -subj "/CN=localhost" 2>/dev/null
  printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
    'extendedKeyUsage=serverAuth' 'subjectAltName=DNS:localhost,IP:127.0.0.1' >"$t/server.ext"
  openssl x509 -req -in "$t/server.csr" -CA "$dir/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
    -days 3650 -extfile "$t/server.ext" -out "$t/server.crt" 2>/dev/null
  chmod 0644 "$dir/ca.pem" "$dir/other-ca.pem" "$t/server.crt"
  chmod 0600 "$t"/*.key
  # PostgreSQL refuses a key it does not own (or root with group access): the server's is its own.
  chown postgres:postgres "$t/server.key" "$t/server.crt"
}

# The cluster: initdb, settings, pg_hba.conf. Roles and the database are made at the first start.
init_cluster() {
  local dir=$1
  install -d -o postgres -g postgres -m 0700 "$dir/data"
  install -d -o postgres -g postgres -m 0755 "$dir/run"
  runuser -u postgres -- "$BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
    --no-sync --no-instructions </dev/null >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  cat >>"$dir/data/postgresql.conf" <<EOF

# scripts/pg-server.sh: a throwaway test cluster; every path in $dir.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$dir/run'
max_connections = 100
fsync = $([ -n "$DURABLE" ] && echo on || echo off)
full_page_writes = $([ -n "$DURABLE" ] && echo on || echo off)
synchronous_commit = on
password_encryption = scram-sha-256
shared_buffers = 64MB
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
EOF
  if [ -n "$STATS" ]; then
    cat >>"$dir/data/postgresql.conf" <<EOF
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
EOF
  fi
  if [ -n "$TLS" ]; then
    cat >>"$dir/data/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = '$dir/tls/server.crt'
ssl_key_file = '$dir/tls/server.key'
ssl_min_protocol_version = 'TLSv1.2'
EOF
  fi
  local tcp=host
  [ -n "$TLS" ] && tcp=hostssl
  cat >"$dir/data/pg_hba.conf" <<EOF
# scripts/pg-server.sh. TYPE DATABASE USER ADDRESS METHOD
local   all all                  trust
$tcp    all $ROLE 127.0.0.1/32   scram-sha-256
host    all $ROLE 127.0.0.1/32   reject
host    all postgres 127.0.0.1/32 reject
host    all all 127.0.0.1/32     trust
EOF
  chown postgres:postgres "$dir/data/pg_hba.conf"
  printf '%s' "$PASSWORD" >"$dir/password"
  printf '127.0.0.1:%s:*:%s:%s\nlocalhost:%s:*:%s:%s\n' "$PORT" "$ROLE" "$PASSWORD" "$PORT" "$ROLE" "$PASSWORD" >"$dir/pgpass"
  chmod 0600 "$dir/password" "$dir/pgpass"
  printf 'PORT=%s\nTLS=%s\nDURABLE=%s\nSTATS=%s\n' "$PORT" "$TLS" "$DURABLE" "$STATS" >"$dir/cluster.env"
}

psql_su() {
  local dir=$1 db=$2; shift 2
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
  "$BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$dir/run" -p "$PORT" -U postgres -d "$db" "$@" </dev/null
}

print_status() {
  local dir=$1
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
  cat <<EOF
PG_DIR=$dir
PG_PORT=$PORT
PG_URL=postgres://$ROLE@127.0.0.1:$PORT/$DB
PG_USER=$ROLE
PG_DATABASE=$DB
PG_PASSWORD_FILE=$dir/password
PG_PASSFILE=$dir/pgpass
PG_SOCKET_DIR=$dir/run
PG_LOG=$dir/server.log
EOF
  if [ -n "$TLS" ]; then
    echo "PG_CA=$dir/ca.pem"
    echo "PG_OTHER_CA=$dir/other-ca.pem"
  fi
  echo "PG_PID=$(postmaster_pid "$dir" || echo)"
}

# Start the postmaster of an initialised DIR and wait until it accepts connections: pg_ctl -w
# reads the state that the postmaster writes into postmaster.pid (no probe connection).
start_server() {
  local dir=$1
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
  if listening "$PORT"; then echo "pg-server: port $PORT of 127.0.0.1 is already in use" >&2; exit 4; fi
  # The lock files left by a crash (kill9), postmaster.pid and the socket's .lock, name a PID that
  # is gone or a zombie not yet reaped: PostgreSQL's own check (kill(pid, 0)) takes the zombie for
  # a running postmaster and refuses to start. No running postmaster of DIR: they are stale.
  if ! postmaster_pid "$dir" >/dev/null; then
    rm -f "$dir/data/postmaster.pid" "$dir"/run/.s.PGSQL.*
  fi
  touch "$dir/server.log"
  chown postgres:postgres "$dir/server.log"
  # The server must not keep the caller's stdout/stderr (a CI pipe would never close).
  if ! runuser -u postgres -- "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start \
    </dev/null >>"$dir/pg_ctl.log" 2>&1; then
    tail -n 20 "$dir/pg_ctl.log" "$dir/server.log" >&2
    if grep -q 'could not bind\|Address already in use' "$dir/server.log"; then
      cmd_stop "$dir" >/dev/null 2>&1 || true
      exit 4
    fi
    cmd_stop "$dir" >/dev/null 2>&1 || true
    die "PostgreSQL did not start (see $dir/server.log)"
  fi
}

cmd_start() {
  [ $# -ge 1 ] || usage
  local dir=$1; shift
  PORT=${PG_PORT:-5433}
  TLS=
  DURABLE=
  STATS=
  local port_given=
  while [ $# -gt 0 ]; do
    case $1 in
      --port) PORT=$2; port_given=1; shift 2 ;;
      --tls) TLS=1; shift ;;
      --durable) DURABLE=1; shift ;;
      --stats) STATS=1; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  check_packages
  local t0 p fresh=
  t0=$(now_ms)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  # Every folder above DIR must be traversable by postgres.
  p=$dir
  while [ "$p" != / ]; do
    p=$(dirname "$p")
    [ "$(( 0$(stat -c %a "$p") & 1 ))" = 1 ] || die "$p is not world-traversable (o+x): choose DIR elsewhere (e.g. under /tmp)"
  done
  chmod 0755 "$dir"
  postmaster_pid "$dir" >/dev/null && die "a cluster already runs in $dir (stop it first)"
  [[ $PORT =~ ^[0-9]+$ ]] && [ "$PORT" -gt 0 ] && [ "$PORT" -lt 65536 ] || die "bad port '$PORT'"
  if [ -s "$dir/data/PG_VERSION" ] && [ -r "$dir/cluster.env" ]; then
    # Started before: same port, TLS and settings (options that contradict them are an error).
    local want_port=$PORT want_tls=$TLS want_durable=$DURABLE want_stats=$STATS
    DURABLE= STATS=
    # shellcheck disable=SC1091
    . "$dir/cluster.env"
    [ -z "$port_given" ] || [ "$want_port" = "$PORT" ] || die "$dir was made with port $PORT, not $want_port"
    [ -z "$want_tls" ] || [ -n "$TLS" ] || die "$dir was made without --tls"
    [ -z "$want_durable" ] || [ -n "$DURABLE" ] || die "$dir was made without --durable"
    [ -z "$want_stats" ] || [ -n "$STATS" ] || die "$dir was made without --stats"
  else
    if listening "$PORT"; then echo "pg-server: port $PORT of 127.0.0.1 is already in use" >&2; exit 4; fi
    rm -rf "$dir/data" "$dir/run"
    [ -z "$TLS" ] || make_tls "$dir"
    init_cluster "$dir"
    fresh=1
  fi
  start_server "$dir"
  if [ -n "$fresh" ]; then
    psql_su "$dir" postgres -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'" -c "CREATE DATABASE $DB OWNER $ROLE" >/dev/null ||
      { cmd_stop "$dir" >/dev/null 2>&1 || true; die "cannot make the role and database"; }
    if [ -n "$STATS" ]; then
      psql_su "$dir" "$DB" -c "CREATE EXTENSION pg_stat_statements" >/dev/null ||
        { cmd_stop "$dir" >/dev/null 2>&1 || true; die "cannot create pg_stat_statements"; }
    fi
  fi
  print_status "$dir"
  echo "START_MS=$(( $(now_ms) - t0 ))"
}

# Wait (up to $1 ms) until no process of the list "pid:starttime"… (arguments after $1) is left;
# a zombie counts as gone (PID 1 here reaps orphans only every few seconds).
wait_gone() {
  local ms=$1 deadline entry pid st left
  shift
  deadline=$(( $(now_ms) + ms ))
  while :; do
    left=
    for entry in "$@"; do
      pid=${entry%%:*} st=${entry#*:}
      alive "$pid" && [ "$(starttime "$pid")" = "$st" ] && { left=1; break; }
    done
    [ -z "$left" ] && return 0
    [ "$(now_ms)" -gt "$deadline" ] && return 1
    sleep 0.02
  done
}

kill_left() {
  local entry pid st
  for entry in "$@"; do
    pid=${entry%%:*} st=${entry#*:}
    if alive "$pid" && [ "$(starttime "$pid")" = "$st" ]; then
      echo "pg-server: killing leftover process $pid" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local dir t0 pm pids=()
  dir=$(cd "$1" 2>/dev/null && pwd -P) || { echo "STOP_MS=0"; return 0; }
  t0=$(now_ms)
  if pm=$(postmaster_pid "$dir"); then
    mapfile -t pids < <(tree "$pm")
    # Fast shutdown (SIGINT, as pg_ctl -m fast): sessions are ended, a checkpoint written. The
    # postmaster is waited for here, 20 ms at a time (pg_ctl polls every 100 ms and waits for
    # postmaster.pid to go).
    kill -INT "$pm" 2>/dev/null || true
    if ! wait_gone 10000 "${pids[@]}"; then
      echo "pg-server: no fast shutdown within 10 s: immediate shutdown" >&2
      kill -QUIT "$pm" 2>/dev/null || true
      wait_gone 3000 "${pids[@]}" || kill_left "${pids[@]}"
    fi
  fi
  echo "STOP_MS=$(( $(now_ms) - t0 ))"
}

cmd_kill9() {
  [ $# -eq 1 ] || usage
  local dir t0 pm pids=() entry
  dir=$(cd "$1" 2>/dev/null && pwd -P) || die "no folder $1"
  t0=$(now_ms)
  pm=$(postmaster_pid "$dir") || die "no cluster runs in $dir"
  mapfile -t pids < <(tree "$pm")
  # Every process at once, as a crash of the machine's PostgreSQL would: no backend outlives the
  # postmaster holding the shared memory (the next start would refuse to run beside it).
  for entry in "${pids[@]}"; do kill -KILL "${entry%%:*}" 2>/dev/null || true; done
  wait_gone 5000 "${pids[@]}" || die "processes of $dir survived SIGKILL"
  echo "KILL_MS=$(( $(now_ms) - t0 ))"
}

cmd_restart() {
  [ $# -eq 1 ] || usage
  local dir t0 out
  dir=$(cd "$1" 2>/dev/null && pwd -P) || die "no folder $1"
  [ -r "$dir/cluster.env" ] || die "no cluster in $dir"
  t0=$(now_ms)
  cmd_stop "$dir"
  out=$(cmd_start "$dir")
  echo "$out"
  echo "RESTART_MS=$(( $(now_ms) - t0 ))"
}

cmd_sql() {
  [ $# -ge 2 ] && [ $# -le 3 ] || usage
  local dir
  dir=$(cd "$1" 2>/dev/null && pwd -P) || die "no folder $1"
  [ -r "$dir/cluster.env" ] || die "no cluster in $dir"
  psql_su "$dir" "${3:-$DB}" -c "$2"
}

cmd_status() {
  [ $# -eq 1 ] || usage
  local dir
  dir=$(cd "$1" 2>/dev/null && pwd -P) || die "no folder $1"
  [ -r "$dir/cluster.env" ] || die "no cluster in $dir"
  print_status "$dir"
  postmaster_pid "$dir" >/dev/null
}

[ $# -ge 1 ] || usage
cmd=$1; shift
case $cmd in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  restart) cmd_restart "$@" ;;
  kill9) cmd_kill9 "$@" ;;
  sql) cmd_sql "$@" ;;
  status) cmd_status "$@" ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
