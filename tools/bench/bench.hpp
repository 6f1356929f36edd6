// fieldsync-bench subcommands. Each one lives in its own file and is registered
// from main.cpp; a subcommand prints what people read, then as its LAST line one
// JSON object with its numbers (for scripts and CI).
#pragma once

#include <CLI/CLI.hpp>

namespace fieldsync::bench {

// `local`: the device store's save rate against bare SQLite inserts (local_bench.cpp).
void register_local(CLI::App& app);
// `chaos`: devices, faults and kills against the real server (chaos_bench.cpp).
void register_chaos(CLI::App& app);
// `sync`: push, pull, incremental and concurrent sync against a real server (sync_bench.cpp).
void register_sync(CLI::App& app);

}  // namespace fieldsync::bench
