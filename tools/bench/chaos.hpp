// The chaos run (issue #5): devices sync through fieldsync-faultproxy while the
// server and the devices are killed with SIGKILL at random moments; afterwards the
// invariants of design.md are checked and the figures reported as one JSON line.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fieldsync/error.hpp"

namespace fieldsync::chaos {

struct ChaosOptions {
  std::vector<std::uint64_t> seeds;  // one run per seed, in order
  // When non-zero: after the listed seeds, keep running new seeds until this
  // much time has passed (the benchmark's long mode).
  std::chrono::seconds budget{0};
  int devices = 4;                 // 2 to 4 officers over two kecamatan
  int steps = 40;                  // random actions per run
  double fault_rate = 0.4;         // drop + reset + truncate share of connections
  double server_kill_rate = 0.15;  // per forked sync: chance the server is killed during it
  double device_kill_rate = 0.5;   // share of syncs run in a child that may be killed
};

struct ChaosReport {
  std::int64_t runs = 0;
  std::vector<std::uint64_t> seeds;
  std::int64_t faults_injected = 0;
  std::int64_t server_kills = 0;
  std::int64_t device_kills = 0;
  std::int64_t changes_made = 0;  // distinct change ids devices accepted
  std::int64_t applied = 0;
  std::int64_t conflicts = 0;
  std::int64_t rejected = 0;
  // Changes dropped on the phone because the officer deleted a record the server
  // never saw before any of its changes was sent (docs/storage.md); not lost.
  std::int64_t withdrawn = 0;
  std::int64_t lost = 0;
  std::int64_t duplicated = 0;
  bool converged = true;
  std::vector<std::string> problems;  // human-readable details of any violation

  nlohmann::json to_json() const;  // the figures, without `problems`
};

// Runs one chaos run per seed (and more while `budget` lasts), adding to `report`.
// Needs the fieldsync-server and fieldsync-faultproxy binaries under the build
// directory (FIELDSYNC_BINARY_DIR). Fails only when the run could not be set up
// or finished (a binary missing, the server not restarting, devices never quiet);
// invariant violations are counted in the report, not returned as errors.
Result<void> run_chaos(const ChaosOptions& options, ChaosReport& report);

}  // namespace fieldsync::chaos
