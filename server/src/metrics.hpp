// Prometheus counters of one server process: requests by path group and status, a
// latency histogram per path group, and the outcome of pushed changes. These are
// per process by nature (Prometheus scrapes each process); nothing here is state
// the server relies on.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "merge.hpp"
#include "server_store.hpp"

namespace fieldsync::server {

class Metrics {
 public:
  static constexpr std::array<double, 12> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                      0.1,   0.25,   0.5,   1.0,  2.5,   10.0};

  // Thread-safe.
  void observe_request(std::string_view path_group, int status, double seconds);
  void count_changes(const MergeStats& stats);
  // Prometheus text format (version 0.0.4). `stats` adds store gauges when given.
  std::string render(const StoreStats* stats) const;

 private:
  struct Histogram {
    std::array<std::int64_t, kBuckets.size()> buckets{};
    std::int64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, std::int64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::map<std::string, std::int64_t> changes_;   // by result
  std::map<std::string, std::int64_t> rejected_;  // by reason
  std::int64_t conflicts_opened_ = 0;
};

}  // namespace fieldsync::server
