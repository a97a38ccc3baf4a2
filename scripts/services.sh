#!/usr/bin/env bash
# Starts (or stops) Chime's private local services: PostgreSQL (as the
# postgres user, in a data folder, on a private port) and the fake email
# service. Idempotent: what already runs is left running.
#
#   scripts/services.sh start|stop|destroy|env
#
# CHIME_DATA_DIR (default .data/dev), CHIME_PG_PORT (55432) and
# CHIME_FAKE_EMAIL_PORT (8025) choose the folder and ports, so the test suite
# runs its own instances beside a dev setup.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data=${CHIME_DATA_DIR:-$here/.data/dev}
pg_port=${CHIME_PG_PORT:-55432}
email_port=${CHIME_FAKE_EMAIL_PORT:-8025}
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
mkdir -p "$data"
# PostgreSQL runs as `postgres`, which may not be able to reach a folder
# inside a private checkout (a mktemp clone, a home folder): then its data
# lives under postgres's own home, one folder per Chime data folder.
if runuser -u postgres -- test -x "$data" 2>/dev/null; then
  pg_data=$data/pg
else
  pg_data=/var/lib/postgresql/chime/$(printf '%s' "$data" | md5sum | cut -c1-16)
fi
database_url="postgresql://postgres@127.0.0.1:$pg_port/chime"
email_url="http://127.0.0.1:$email_port"

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

as_postgres() { (cd / && runuser -u postgres -- "$@"); }

pg_running() { [ -f "$pg_data/postmaster.pid" ] && as_postgres "$pg_bin/pg_ctl" -D "$pg_data" status >/dev/null 2>&1; }

start_pg() {
  [ -n "$pg_bin" ] || { echo "services: PostgreSQL is not installed (run scripts/setup.sh)" >&2; exit 1; }
  mkdir -p "$data"
  if [ ! -f "$pg_data/PG_VERSION" ]; then
    rm -rf "$pg_data"
    install -d -o postgres -g postgres -m 755 "$(dirname "$pg_data")"
    install -d -o postgres -g postgres -m 700 "$pg_data"
    as_postgres "$pg_bin/initdb" -D "$pg_data" -U postgres --auth=trust \
      --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! pg_running; then
    if port_taken "$pg_port"; then
      echo "services: port $pg_port is taken by another program; choose another with CHIME_PG_PORT" >&2
      exit 1
    fi
    # TCP on loopback only; no Unix socket, so nothing collides with a
    # system-wide PostgreSQL.
    as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_data/server.log" -w -t 60 \
      -o "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" \
      start >/dev/null
  fi
  if ! psql -h 127.0.0.1 -p "$pg_port" -U postgres -Atc \
      "SELECT 1 FROM pg_database WHERE datname = 'chime'" | grep -q 1; then
    psql -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE DATABASE chime"
  fi
}

stop_pg() {
  if pg_running; then
    as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null
  fi
}

email_pid_file=$data/fake-email.pid

email_running() { [ -f "$email_pid_file" ] && kill -0 "$(cat "$email_pid_file")" 2>/dev/null; }

start_email() {
  email_running && return 0
  if port_taken "$email_port"; then
    echo "services: port $email_port is taken by another program; choose another with CHIME_FAKE_EMAIL_PORT" >&2
    exit 1
  fi
  [ -x "$here/build/chime" ] || { echo "services: build/chime is missing (run scripts/setup.sh)" >&2; exit 1; }
  mkdir -p "$data"
  nohup "$here/build/chime" fake-email --port "$email_port" \
    --ledger "$data/email-ledger.jsonl" >"$data/fake-email.log" 2>&1 &
  echo $! >"$email_pid_file"
  for _ in $(seq 1 100); do
    curl -fsS "$email_url/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "services: the fake email service did not start; see $data/fake-email.log" >&2
  exit 1
}

stop_email() {
  if email_running; then
    kill "$(cat "$email_pid_file")"
  fi
  rm -f "$email_pid_file"
}

case "${1:-start}" in
  start)
    start_pg
    start_email
    cat <<EOT
PostgreSQL   $database_url   (data: $pg_data)
fake email   $email_url   (ledger: $data/email-ledger.jsonl, GET $email_url/ledger)
EOT
    ;;
  stop)
    stop_email
    stop_pg
    ;;
  destroy)
    # Stops and deletes the data (the test command starts from nothing).
    stop_email
    stop_pg
    rm -rf "$pg_data" "$data"
    ;;
  env)
    echo "export CHIME_DATABASE_URL=$database_url CHIME_EMAIL_URL=$email_url"
    ;;
  *)
    echo "usage: $0 start|stop|destroy|env" >&2
    exit 2
    ;;
esac
