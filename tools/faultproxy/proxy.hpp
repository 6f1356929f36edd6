// fieldsync-faultproxy's TCP proxy: accepts on a loopback address, connects each
// client to the upstream server and forwards bytes both ways through a seeded
// fault plan and a shaped link (fault_plan.hpp). One thread, C++20 coroutines.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "fault_plan.hpp"
#include "fieldsync/error.hpp"

namespace fieldsync::faultproxy {

struct ProxyConfig {
  HostPort listen;
  HostPort upstream;
  FaultRates rates;
  LinkProfile link;
  std::uint64_t seed = 1;
};

// Totals since start; printed as one JSON line at shutdown (docs/faults.md).
struct Counters {
  std::uint64_t connections = 0;      // accepted
  std::uint64_t passed = 0;           // ended without a drop, reset or truncation
  std::uint64_t upstream_errors = 0;  // the upstream refused the connection
  std::uint64_t drop_up = 0, drop_down = 0;
  std::uint64_t reset_up = 0, reset_down = 0;
  std::uint64_t truncate = 0;
  std::uint64_t delay = 0;
  std::uint64_t throttled = 0;  // connections that went through a shaped link
  std::uint64_t bytes_up = 0, bytes_down = 0;
  std::int64_t delay_ms = 0;           // total of the delay faults
  std::int64_t throttle_delay_ms = 0;  // total over directions of the modelled span added

  std::uint64_t faults() const noexcept {
    return drop_up + drop_down + reset_up + reset_down + truncate + delay;
  }
  nlohmann::json to_json() const;
};

// Writes one line per injected fault to a FILE (stderr or --log), flushed at once.
class FaultLog {
 public:
  explicit FaultLog(std::FILE* out) : out_(out) {}
  void line(const std::string& text);

 private:
  std::FILE* out_;
};

struct ProxyState;  // proxy.cpp: shared by the proxy and its sessions

class Proxy {
 public:
  // `log` must outlive every session: keep it alive until the io_context is gone.
  Proxy(boost::asio::io_context& io, ProxyConfig config, FaultLog& log);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // Binds and listens. Returns the bound port (useful with port 0) or an io error.
  Result<std::uint16_t> open();
  // Starts accepting on the io_context's thread.
  void start();
  // Stops accepting; sessions in flight continue until the io_context stops.
  void stop();
  const Counters& counters() const noexcept;

 private:
  std::shared_ptr<ProxyState> state_;
};

}  // namespace fieldsync::faultproxy
