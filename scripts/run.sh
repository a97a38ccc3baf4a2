#!/usr/bin/env bash
# The run command: installs what is missing, builds, starts private
# PostgreSQL and the fake email service, and runs one Chime node in the
# foreground (Ctrl-C stops it). Flags are passed to `chime dev`, e.g.
#   scripts/run.sh --clock-start 2027-03-15T03:14:00Z --clock-rate 10
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$here/scripts/setup.sh"
exec "$here/build/chime" dev "$@"
