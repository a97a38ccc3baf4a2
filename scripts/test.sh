#!/usr/bin/env bash
# The test command: installs what is missing, builds, starts private
# PostgreSQL (own data folder and port, apart from a dev setup), runs every
# test through CTest, then (only without arguments) the sanitizer and fuzzing
# stage scripts/sanitize.sh, and stops the services again. Extra arguments go
# to ctest (e.g. -L unit). Idempotent.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$here/scripts/setup.sh"

export CHIME_DATA_DIR=${CHIME_TEST_DATA_DIR:-$here/.data/test}
# Below Linux's ephemeral range (32768-60999): a test restarts its broker or
# database, and an outgoing connection holding the port as its own would
# make that restart fail (EADDRINUSE).
export CHIME_PG_PORT=${CHIME_TEST_PG_PORT:-25442}
export CHIME_FAKE_EMAIL_PORT=${CHIME_TEST_FAKE_EMAIL_PORT:-18025}
export CHIME_AMQP_PORT=${CHIME_TEST_AMQP_PORT:-25682}
# A strict broker: a delivery held unacked for a minute closes its channel.
export CHIME_AMQP_CONSUMER_TIMEOUT_MS=60000
# Every run starts from empty services and removes them afterwards.
"$here/scripts/services.sh" destroy
trap '"$here/scripts/services.sh" destroy' EXIT
"$here/scripts/services.sh" start
export CHIME_TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:$CHIME_PG_PORT/chime"
export CHIME_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:$CHIME_AMQP_PORT/%2F"
export CHIME_TEST_SERVICES="$here/scripts/services.sh"
export CHIME_TEST_RABBITMQ_NODE=$("$here/scripts/services.sh" env | sed -n 's/.*RABBITMQ_NODE=\([^ ]*\).*/\1/p')
export CHIME_TEST_RABBITMQ_LOG_DIR=$("$here/scripts/services.sh" env | sed -n 's/.*RABBITMQ_LOG_DIR=\([^ ]*\).*/\1/p')

# Two at a time: the tests on the services run alone (tests/CMakeLists.txt).
(cd "$here/build" && ctest --output-on-failure --timeout 600 -j2 "$@")
# The whole suite also runs sanitized and fuzzes; a selection (-R, -L) stays
# quick.
if (($# == 0)); then
  "$here/scripts/sanitize.sh"
fi
