#!/usr/bin/env bash
# Installs what Chime needs from Debian 12's packages (only what is missing) and builds.
# Idempotent: a second run finds everything installed and rebuilds incrementally.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=(
  build-essential cmake ccache pkg-config ca-certificates curl tzdata
  libcaf-dev libpqxx-dev libpq-dev libcpp-httplib-dev nlohmann-json3-dev catch2
  libhowardhinnant-date-dev librabbitmq-dev libssl-dev libcurl4-openssl-dev
  libhttp-parser-dev
  postgresql-15 postgresql-client-15 rabbitmq-server python3 python3-jsonschema
  clang-14 libclang-rt-14-dev llvm-14 libjemalloc-dev
  redis-server wrk
  nodejs chromium
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  # The Debian packages start system-wide services on install; Chime runs its own
  # private instances, so keep the package scripts from starting them.
  printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee /usr/sbin/policy-rc.d >/dev/null
  $sudo_cmd chmod +x /usr/sbin/policy-rc.d
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
  $sudo_cmd rm -f /usr/sbin/policy-rc.d
fi
# npm comes with some Node.js packages (NodeSource's) and apart with Debian's.
if ! command -v npm >/dev/null; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends npm
fi
# The dashboard's browser test drives Debian's Chromium with playwright-core,
# pinned by its lock file; it never downloads a browser.
browser=$here/tests/browser
if [ ! -f "$browser/node_modules/.package-lock.json" ] \
  || [ "$browser/package-lock.json" -nt "$browser/node_modules/.package-lock.json" ]; then
  (cd "$browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi

build_type=${CHIME_BUILD_TYPE:-RelWithDebInfo}
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE="$build_type" >/dev/null
cmake --build "$here/build" -j"${CHIME_BUILD_JOBS:-2}"
