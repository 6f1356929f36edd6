// The short chaos run (issue #5): devices sync through fieldsync-faultproxy with a
// high fault rate while the server and devices are SIGKILLed; afterwards no change
// is lost or duplicated and every device has converged with the server in scope.
#include <iostream>

#include <catch2/catch.hpp>

#include "chaos.hpp"

using namespace fieldsync;

TEST_CASE("chaos: faults and kills lose nothing, duplicate nothing, and all converge",
          "[e2e][chaos]") {
  chaos::ChaosOptions options;
  options.seeds = {11, 12, 13};
  options.devices = 4;
  options.steps = 30;
  options.fault_rate = 0.45;
  options.server_kill_rate = 0.25;
  chaos::ChaosReport report;
  auto r = chaos::run_chaos(options, report);
  INFO(report.to_json().dump());
  for (const auto& p : report.problems) UNSCOPED_INFO(p);
  if (!r) FAIL("the chaos run did not finish: " << r.error().to_string());
  std::cout << report.to_json().dump() << std::endl;
  CHECK(report.runs == 3);
  CHECK(report.changes_made > 0);
  CHECK(report.faults_injected > 0);
  CHECK(report.device_kills + report.server_kills > 0);
  CHECK(report.applied > 0);
  CHECK(report.lost == 0);
  CHECK(report.duplicated == 0);
  CHECK(report.converged);
  CHECK(report.problems.empty());
}
