#!/usr/bin/env bash
# The main job: installs what is missing, builds, initialises a demo regency
# server on a SQLite file, starts it on 127.0.0.1 and runs the field-day demo
# (one device per kecamatan syncing over HTTP). Stops the server at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${FIELDSYNC_BUILD:-build/release}
cmake -G Ninja -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DFIELDSYNC_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target fieldsync-server fieldsync-demo fieldsync-cli

work=${FIELDSYNC_DEMO_DIR:-$PWD/demo-data}
rm -rf "$work" && mkdir -p "$work"
"$build/server/fieldsync-server" init --demo --db "$work/server.db" > "$work/users.jsonl"
"$build/server/fieldsync-server" serve --db "$work/server.db" --listen 127.0.0.1:0 \
  > "$work/server.out" 2> "$work/server.log" &
server_pid=$!
trap 'kill -TERM $server_pid 2>/dev/null; wait $server_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/server.out" | head -1)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "${port:-}" ] || { echo "the server did not start; see $work/server.log" >&2; exit 1; }
echo "server on http://127.0.0.1:$port (data in $work/server.db, log in $work/server.log)"
"$build/tools/demo/fieldsync-demo" --server "http://127.0.0.1:$port" \
  --users "$work/users.jsonl" --dir "$work/devices"
cat <<EOT

To run the server alone:
  $build/server/fieldsync-server serve --db $work/server.db --listen 127.0.0.1:8080
Users and their passwords for this demo are in $work/users.jsonl.
EOT
