#!/usr/bin/env bash
# Runs every test: installs what is missing, builds with warnings as errors under
# AddressSanitizer + UndefinedBehaviorSanitizer, and runs CTest (unit, property,
# crash, end-to-end against the real server binary, bindings, install).
# Usage: scripts/test.sh [extra ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${FIELDSYNC_TEST_BUILD:-build/test}
# Let ccache reuse objects across clones in other folders (CI builds a fresh clone).
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
cmake -G Ninja -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" \
  -DFIELDSYNC_WERROR=ON -DFIELDSYNC_SANITIZE=ON -DFIELDSYNC_TEST_HOOKS=ON >/dev/null
cmake --build "$build" -j "$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" --timeout 600 "$@"
