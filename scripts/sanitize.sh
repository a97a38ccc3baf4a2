#!/usr/bin/env bash
# The sanitizer stage of the test command (scripts/test.sh runs it after the
# whole suite): builds build-asan with clang 14, AddressSanitizer and
# UndefinedBehaviorSanitizer on every target plus the libFuzzer targets, runs
# the unit, pg and sim tests in it and replays each fuzz corpus, then fuzzes
# each target for CHIME_FUZZ_S (10) seconds. Any sanitizer report, crash or
# broken fuzz property fails the run.
#
# Needs the services scripts/test.sh starts and the CHIME_TEST_* variables it
# exports; to run this stage alone, start them the same way (see test.sh).
# CHIME_SIM_SEEDS_MAX (default 3) is how many seeds of each simulator set run
# here: a sanitized run costs several times a plain one.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$here/build-asan
fuzz_s=${CHIME_FUZZ_S:-10}
fuzzers=(user_json settings delivery_message cluster_messages)
stage_start=$SECONDS

CXX=clang++-14 cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCHIME_SANITIZE="address;undefined" -DCHIME_FUZZ=ON >/dev/null
# Only what the stage runs: no chime binary, no e2e.
cmake --build "$build" -j"${CHIME_BUILD_JOBS:-2}" --target chime_unit_tests \
  chime_pg_tests chime-sim "${fuzzers[@]/#/fuzz_}"
echo "sanitize: built in $((SECONDS - stage_start)) s"

# A report stops the process with a failing exit code; leaks are reports.
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$here/tests/sanitizers/lsan.supp:print_suppressions=0
export CHIME_SIM_SEEDS_MAX=${CHIME_SIM_SEEDS_MAX:-3}

tests_start=$SECONDS
# The simulator's determinism and teeth checks prove properties of the
# checker, not of memory: the plain suite runs them, and under ASan they
# took 160 s of a CI run that must stay under 45 minutes. The second half
# of the cluster seeds runs the same code as the first (25 s under ASan).
(cd "$build" && ctest --output-on-failure --timeout 600 -j2 -L 'unit|pg|sim|fuzz' \
  -E '^sim_(determinism|teeth|seeds_cluster_b)$')
echo "sanitize: tests in $((SECONDS - tests_start)) s"

# Two fuzzers at a time, one per core. New inputs go to build-asan, never
# into the committed corpus (libFuzzer writes to the first folder).
fuzz_start=$SECONDS
fuzz() {
  local name=$1 work=$build/fuzz/corpus/$1
  mkdir -p "$work"
  "$build/fuzz/fuzz_$name" -max_total_time="$fuzz_s" -print_final_stats=1 \
    -artifact_prefix="$build/fuzz/$name-" "$work" "$here/tests/fuzz/corpus/$name" \
    >"$build/fuzz/$name.log" 2>&1 || {
    echo "sanitize: fuzz_$name failed; the input is in $build/fuzz/$name-*" >&2
    tail -n 60 "$build/fuzz/$name.log" >&2
    return 1
  }
  echo "sanitize: fuzz_$name: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' \
    "$build/fuzz/$name.log" | grep -o '[0-9]*$') runs in ${fuzz_s} s, no crash"
}
failed=0
for ((i = 0; i < ${#fuzzers[@]}; i += 2)); do
  pids=()
  for name in "${fuzzers[@]:i:2}"; do
    fuzz "$name" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
  done
done
echo "sanitize: fuzzing in $((SECONDS - fuzz_start)) s; stage in $((SECONDS - stage_start)) s"
exit $failed
