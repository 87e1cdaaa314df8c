#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds Larder with warnings as errors and
# runs every test (unit, fuzz corpus replay, integration against real servers).
# This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build=${LARDER_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLARDER_WERROR=ON \
  ${LARDER_SANITIZE:+-DLARDER_SANITIZE=$LARDER_SANITIZE}
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure -j2 "$@"
