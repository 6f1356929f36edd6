#!/usr/bin/env bash
# Runs the server's, the device core's and the end-to-end tests under
# ThreadSanitizer: the group-commit writer, the Beast listener and sessions, the
# pipelined sync (answers committed on a helper thread), and the end-to-end tests
# against the real server binary (built with TSan too) with many devices at once.
# Usage: scripts/tsan-test.sh [extra ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${FIELDSYNC_TSAN_BUILD:-build/tsan}
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
cmake -G Ninja -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" \
  -DFIELDSYNC_WERROR=ON -DFIELDSYNC_TSAN=ON -DFIELDSYNC_TEST_HOOKS=ON \
  -DFIELDSYNC_BINDINGS=OFF -DFIELDSYNC_TOOLS=ON >/dev/null
# Everything but the bindings: the end-to-end tests also run the tools (the fault
# proxy, fieldsync-cli, fieldsync-admin, the demo).
cmake --build "$build" -j "$(nproc)"
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" --timeout 900 -R "^(server|e2e|core):" "$@"
