// `fieldsync-bench chaos`: the long chaos run of issue #5 (chaos.hpp) for a given
// number of minutes; prints any invariant violation, then the figures as one JSON line.
#include <iostream>
#include <memory>

#include "bench.hpp"
#include "chaos.hpp"

namespace fieldsync::bench {
namespace {

struct ChaosArgs {
  double minutes = 1;
  std::uint64_t seed = 1;
  int devices = 4;
  int steps = 60;
  double fault_rate = 0.4;
};

void run(const ChaosArgs& a) {
  chaos::ChaosOptions o;
  o.seeds = {a.seed};
  o.budget = std::chrono::seconds(static_cast<std::int64_t>(a.minutes * 60));
  o.devices = a.devices;
  o.steps = a.steps;
  o.fault_rate = a.fault_rate;
  chaos::ChaosReport report;
  auto r = chaos::run_chaos(o, report);
  for (const auto& p : report.problems) std::cout << "violation: " << p << "\n";
  if (!r) std::cout << "error: " << r.error().to_string() << "\n";
  std::cout << report.to_json().dump() << std::endl;
  const bool good = r && report.lost == 0 && report.duplicated == 0 && report.converged;
  if (!good) throw CLI::RuntimeError(1);
}

}  // namespace

void register_chaos(CLI::App& app) {
  auto args = std::make_shared<ChaosArgs>();
  auto* cmd = app.add_subcommand(
      "chaos", "Devices sync through the fault proxy while the server and devices are killed");
  cmd->add_option("--minutes", args->minutes, "How long to keep starting new runs")
      ->capture_default_str();
  cmd->add_option("--seed", args->seed, "First seed (then seed+1, ...)")->capture_default_str();
  cmd->add_option("--devices", args->devices, "Devices per run (2-4)")->capture_default_str();
  cmd->add_option("--steps", args->steps, "Random actions per run")->capture_default_str();
  cmd->add_option("--fault-rate", args->fault_rate, "Share of connections broken")
      ->capture_default_str();
  cmd->callback([args] { run(*args); });
}

}  // namespace fieldsync::bench
