#!/usr/bin/env bash
# Starts (or stops) Chime's private local services: PostgreSQL (as the
# postgres user, in a data folder, on a private port), RabbitMQ (as the
# rabbitmq user, its own node name and ports) and the fake email service.
# Idempotent: what already runs is left running.
#
#   scripts/services.sh start|stop|destroy|env|restart-rabbitmq|restart-postgres
#                       |freeze-postgres|thaw-postgres
#
# CHIME_DATA_DIR (default .data/dev), CHIME_PG_PORT (55432), CHIME_AMQP_PORT
# (55672; its Erlang distribution port is one higher) and CHIME_FAKE_EMAIL_PORT
# (8025) choose the folder and ports, so the test suite runs its own instances
# beside a dev setup.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data=${CHIME_DATA_DIR:-$here/.data/dev}
pg_port=${CHIME_PG_PORT:-55432}
email_port=${CHIME_FAKE_EMAIL_PORT:-8025}
amqp_port=${CHIME_AMQP_PORT:-55672}
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
instance=$(printf '%s' "$data" | md5sum | cut -c1-8)
if runuser -u rabbitmq -- test -x "$data" 2>/dev/null; then
  rabbit_data=$data/rabbitmq
else
  rabbit_data=/var/lib/rabbitmq/chime/$instance
fi
rabbit_node=chime-$instance@localhost
database_url="postgresql://postgres@127.0.0.1:$pg_port/chime"
email_url="http://127.0.0.1:$email_port"
amqp_url="amqp://guest:guest@127.0.0.1:$amqp_port/%2F"

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port_free() {
  for _ in $(seq 1 150); do
    port_taken "$1" || return 0
    sleep 0.2
  done
  return 1
}

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
    # system-wide PostgreSQL. pg_stat_statements: where a burst's database
    # time goes (CREATE EXTENSION pg_stat_statements to read it).
    as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_data/server.log" -w -t 60 \
      -o "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c shared_preload_libraries=pg_stat_statements" \
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
  wait_port_free "$pg_port" || true
}

rabbit_vars=(
  RABBITMQ_MNESIA_BASE="$rabbit_data/mnesia" RABBITMQ_LOG_BASE="$rabbit_data/log"
  RABBITMQ_ENABLED_PLUGINS_FILE="$rabbit_data/enabled_plugins"
  RABBITMQ_NODENAME="$rabbit_node" RABBITMQ_NODE_PORT="$amqp_port"
  RABBITMQ_DIST_PORT="$((amqp_port + 1))" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
)
# The test suite runs its broker with a short consumer_timeout (RabbitMQ's
# default is 30 min), so that a delivery held unacked too long shows.
if [ -n "${CHIME_AMQP_CONSUMER_TIMEOUT_MS:-}" ]; then
  rabbit_vars+=(RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-rabbit consumer_timeout $CHIME_AMQP_CONSUMER_TIMEOUT_MS")
fi

rabbit_running() { rabbitmqctl -n "$rabbit_node" -q ping >/dev/null 2>&1; }

start_rabbit() {
  command -v rabbitmq-server >/dev/null || { echo "services: RabbitMQ is not installed (run scripts/setup.sh)" >&2; exit 1; }
  rabbit_running && return 0
  if ! wait_port_free "$amqp_port"; then
    echo "services: port $amqp_port is taken by another program; choose another with CHIME_AMQP_PORT" >&2
    exit 1
  fi
  install -d -o rabbitmq -g rabbitmq "$(dirname "$rabbit_data")" "$rabbit_data" \
    "$rabbit_data/mnesia" "$rabbit_data/log"
  echo "[]." >"$rabbit_data/enabled_plugins"
  chown rabbitmq:rabbitmq "$rabbit_data/enabled_plugins"
  # The Debian wrapper switches to the rabbitmq user with su, in a session
  # of its own; it is stopped with rabbitmqctl, not by killing this process.
  # exec: no shell stays behind holding this script's output open.
  (cd / && exec env "${rabbit_vars[@]}" setsid nohup rabbitmq-server \
    >"$data/rabbitmq.log" 2>&1 </dev/null) &
  # await_startup fails at once while the node is not listening yet: retry.
  for _ in $(seq 1 90); do
    rabbitmqctl -n "$rabbit_node" -q await_startup >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "services: RabbitMQ did not start; see $data/rabbitmq.log and $rabbit_data/log" >&2
  exit 1
}

stop_rabbit() {
  if rabbit_running; then
    rabbitmqctl -n "$rabbit_node" -q stop >/dev/null 2>&1 || true
  fi
  # `stop` can return while the node still holds its port: a restart right
  # after would find the port taken.
  wait_port_free "$amqp_port" || true
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
    start_rabbit
    start_email
    cat <<EOT
PostgreSQL   $database_url   (data: $pg_data)
RabbitMQ     $amqp_url   (node $rabbit_node, data: $rabbit_data)
fake email   $email_url   (ledger: $data/email-ledger.jsonl, GET $email_url/ledger)
EOT
    ;;
  stop)
    stop_email
    stop_rabbit
    stop_pg
    ;;
  destroy)
    # Stops and deletes the data (the test command starts from nothing).
    stop_email
    stop_rabbit
    stop_pg
    rm -rf "$pg_data" "$rabbit_data" "$data"
    ;;
  restart-rabbitmq)
    stop_rabbit
    start_rabbit
    ;;
  restart-postgres)
    stop_pg
    start_pg
    ;;
  freeze-postgres|thaw-postgres)
    # Every process of the server (the postmaster and each backend), as a
    # machine that stops answering without closing a connection.
    [ "$1" = freeze-postgres ] && sig=STOP || sig=CONT
    postmaster=$(head -1 "$pg_data/postmaster.pid")
    kill -s "$sig" "$postmaster" $(pgrep -P "$postmaster")
    ;;
  env)
    echo "export CHIME_DATABASE_URL=$database_url CHIME_AMQP_URL=$amqp_url CHIME_EMAIL_URL=$email_url RABBITMQ_NODE=$rabbit_node RABBITMQ_LOG_DIR=$rabbit_data/log"
    ;;
  *)
    echo "usage: $0 start|stop|destroy|env" >&2
    exit 2
    ;;
esac
