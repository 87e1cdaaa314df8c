#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds Larder with warnings as errors and
# runs every test (unit, fuzz corpus replay, PostgreSQL client, integration
# against real servers), then builds a second tree with AddressSanitizer +
# UndefinedBehaviorSanitizer and runs the same tests again in it.
# This is the README's test command; .ci/run calls it. docs/testing.md has more.
#
# Environment:
#   LARDER_BUILD_DIR=dir      normal build tree (default: build); the sanitizer
#                             tree is "<dir>-asan"
#   LARDER_SKIP_SANITIZE=1    skip the sanitizer pass (quick local runs; CI runs it)
#   LARDER_SANITIZE=list      also build the *normal* tree with these sanitizers
#   LARDER_SANITIZE_SLOW=f    LARDER_TEST_SLOW for the sanitizer pass (default 3)
#   LARDER_TEST_SLOW=f        the integration harness multiplies its timeouts and
#                             latency limits by f (default 1; normal pass only)
# Extra arguments go to both ctest runs, e.g. `scripts/test.sh -R unit`.
#
# A failing normal ctest run does not stop the sanitizer pass (both results are
# worth seeing); the script exits non-zero if either failed. A failing build
# stops it at once.
set -euo pipefail
cd "$(dirname "$0")/.."

timings=()
phase_start=0
times_file=$(mktemp)
cpu_seconds() { # sets cpu: user+sys CPU seconds of this shell's finished children
  times >"$times_file"  # not in $(...): a subshell would report its own children
  cpu=$(awk 'END { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
                   printf "%d", t }' "$times_file")
}
phase() { # phase <name>: starts timing a phase (and ends the previous one)
  phase_end
  phase_name=$1
  phase_start=$(date +%s)
  cpu_seconds
  phase_cpu=$cpu
  echo "==== $phase_name"
}
phase_end() {
  if [[ $phase_start -ne 0 ]]; then
    cpu_seconds
    timings+=("$(printf '%-28s %5ds wall %5ds cpu   load %s' "$phase_name" \
      $(($(date +%s) - phase_start)) $((cpu - phase_cpu)) "$(cut -d' ' -f1-3 /proc/loadavg)")")
    phase_start=0
  fi
}
# shellcheck disable=SC2317  # summary is called by the EXIT trap
summary() {
  phase_end
  echo "==== timings (cpu = user+sys of finished child processes; load = 1/5/15 min load average)"
  printf '  %s\n' "${timings[@]}"
  echo "  total $((SECONDS / 60))m$((SECONDS % 60))s"
  rm -f "$times_file"
}
trap summary EXIT

jobs=$(nproc)
status=0

phase "setup (apt)"
bash scripts/setup.sh

build=${LARDER_BUILD_DIR:-build}
phase "build $build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLARDER_WERROR=ON \
  ${LARDER_SANITIZE:+-DLARDER_SANITIZE=$LARDER_SANITIZE}
cmake --build "$build" -j"$jobs"

phase "ctest $build"
# A few integration tests assert latencies that a busy machine can miss; a
# failed test gets one more attempt (LARDER_TEST_ATTEMPTS=1: none), and the
# tests that needed it are listed in ctest's output ("Passed" after a failure).
ctest --test-dir "$build" --output-on-failure -j2 --repeat "until-pass:${LARDER_TEST_ATTEMPTS:-2}" "$@" ||
  status=$?

if [[ ${LARDER_SKIP_SANITIZE:-0} == 1 ]]; then
  echo "==== sanitizer pass skipped (LARDER_SKIP_SANITIZE=1)"
  exit "$status"
fi

# Sanitizer pass. Debug (-O0 -g): assert()s stay on and stack traces are
# exact. Not -O1/-O2: with -fsanitize=address, GCC 12 then reports a false
# -Wmaybe-uninitialized in libstdc++'s <regex> (included by Catch2's main,
# e.g. tests/pg/main.cpp), and -Werror turns it into a failed build.
# -fno-sanitize-recover=all (set by CMake for LARDER_SANITIZE) makes every UBSan
# finding fatal.
asan="$build-asan"
phase "build $asan"
cmake -S . -B "$asan" -DCMAKE_BUILD_TYPE=Debug -DLARDER_WERROR=ON -DLARDER_SANITIZE=address,undefined
cmake --build "$asan" -j"$jobs"

phase "ctest $asan"
# Any report (ASan, UBSan, LeakSanitizer at exit) prints a stack trace to the
# process' stderr and ends it with status 86, which nothing else uses: the unit,
# pg and fuzz replay binaries then fail their ctest directly, and a larder
# started by the integration harness writes it into its log, where the harness
# looks for "AddressSanitizer" / "runtime error:" / "LeakSanitizer" lines.
# LeakSanitizer only runs when a process exits by itself (not on SIGKILL), so
# the harness ends Larder with SIGTERM after each test and fails the test on a
# report or on exit status 86.
# LARDER_TEST_SLOW=3: the -O0 ASan binary is several times slower, so the
# harness multiplies its timeouts, deadlines and latency limits by 3.
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=0:exitcode=86:detect_leaks=1:print_stacktrace=1:strict_init_order=1:check_initialization_order=1:detect_stack_use_after_return=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:exitcode=86:print_stacktrace=1:report_error_type=1
export LARDER_TEST_SLOW=${LARDER_SANITIZE_SLOW:-3}
# Some integration tests assert latencies (1-5 s) and fixed waits that an -O0
# ASan binary on a busy 2-core machine sometimes misses even when scaled, so a
# failed test gets one more attempt here (LARDER_SANITIZE_ATTEMPTS=1: none), as
# in the normal pass above; a retry never hides a sanitizer report: every
# attempt's output is kept in LastTest.log, which is searched below.
attempts=${LARDER_SANITIZE_ATTEMPTS:-2}
asan_status=0
ctest --test-dir "$asan" --output-on-failure -j2 --repeat "until-pass:$attempts" "$@" || asan_status=$?
last_log="$asan/Testing/Temporary/LastTest.log"
if [[ -f $last_log ]]; then
  retried=$(awk '/^[0-9]+\/[0-9]+ Test: / { name = $3 }
                 /^Test (Failed|Timeout|Exception|Not Run)/ { failed[name] = 1 }
                 /^Test Passed\./ && (name in failed) { print name }' "$last_log" | sort -u)
  if [[ -n $retried ]]; then
    echo "==== passed only on a retry under sanitizers (timing?): ${retried//$'\n'/ }"
  fi
  if grep -Eq '==[0-9]+==ERROR: (Address|Leak)Sanitizer|: runtime error: ' "$last_log"; then
    echo "==== sanitizer reports (full traces above and in $last_log):"
    grep -Eo '==[0-9]+==ERROR: (Address|Leak)Sanitizer.*|[^ ]*: runtime error: .*' "$last_log" |
      sed -E 's/^==[0-9]+==/==/; s/ on address 0x[0-9a-f]+.*//' | sort | uniq -c | head -40 || true
    asan_status=1
  fi
fi
[[ $asan_status -eq 0 ]] || status=$asan_status

exit "$status"
