// The decisions of fieldsync-faultproxy that need no sockets: per-connection fault
// plans drawn from a seeded generator, link profiles and their shaping model, and
// the loopback-only address rule. Pure functions, so tests can check them directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fieldsync/error.hpp"

namespace fieldsync::faultproxy {

enum class FaultKind { none, drop, reset, truncate };
enum class Direction { up, down };  // up = client to server, down = server to client

std::string_view fault_kind_name(FaultKind k) noexcept;
std::string_view direction_name(Direction d) noexcept;

// Probabilities per connection. drop + reset + truncate must not exceed 1; the
// delay is drawn independently of them.
struct FaultRates {
  double drop = 0;
  double reset = 0;
  double truncate = 0;
  double delay = 1;           // share of connections delayed when delay_ms > 0
  std::int64_t delay_ms = 0;  // hold the first bytes of the response this long
};

// Checks ranges: each rate in [0, 1], their sum <= 1, delay_ms >= 0.
Result<void> check_rates(const FaultRates& rates);

// What happens to one connection. The offset of a drop, reset or truncation is
// fixed relative to the first chunk the proxy reads in `direction` (see
// fault_offset), which on loopback is the whole request or response for small ones.
struct ConnectionPlan {
  FaultKind kind = FaultKind::none;
  Direction direction = Direction::up;
  double offset_fraction = 0;  // in [0, 1)
  bool delayed = false;
};

// Deterministic in (seed, connection_id) alone, so a run's fault sequence does
// not depend on timing. Connection ids count accepted connections from 1.
ConnectionPlan plan_connection(std::uint64_t seed, std::uint64_t connection_id,
                               const FaultRates& rates) noexcept;

// The number of bytes of the first chunk of `first_chunk` bytes (>= 1) that are
// forwarded before the fault: uniform in [0, n) for drop and reset; in
// [n / 2, n) for truncate (the client gets at least half, then a clean EOF).
std::size_t fault_offset(const ConnectionPlan& plan, std::size_t first_chunk) noexcept;

// A link: serialisation at bandwidth_bps (0 = unlimited) plus rtt_ms / 2 of
// one-way latency per direction.
struct LinkProfile {
  std::string name = "none";
  std::int64_t bandwidth_bps = 0;
  std::int64_t rtt_ms = 0;
  bool shapes() const noexcept { return bandwidth_bps > 0 || rtt_ms > 0; }
};

// "2g" (50 kbit/s, 600 ms), "3g" (1 Mbit/s, 200 ms), "satellite" (2 Mbit/s,
// 1200 ms), "lan" (100 Mbit/s, 1 ms), "none". Unknown names: invalid_argument.
Result<LinkProfile> link_profile(std::string_view name);

// One direction of a shaped link, in microseconds on any monotonic time line.
// A chunk of n bytes arriving at `arrival_us` starts when the link is free, takes
// n * 8 / bandwidth to send and reaches the peer one-way latency later. Returns
// that delivery time; deliveries never go backwards.
class LinkShaper {
 public:
  explicit LinkShaper(LinkProfile profile) : profile_(std::move(profile)) {}
  std::int64_t schedule(std::int64_t arrival_us, std::size_t n) noexcept;
  // Adds a one-off extra delay to a delivery time (the `delay` fault), keeping
  // later deliveries behind it.
  std::int64_t push_back_to(std::int64_t deliver_us) noexcept;

 private:
  LinkProfile profile_;
  std::int64_t link_free_us_ = 0;
  std::int64_t last_delivery_us_ = 0;
};

struct HostPort {
  std::string host;  // a numeric loopback address ("127.0.0.1", "::1")
  std::uint16_t port = 0;
};

// Parses "127.0.0.1:PORT", "localhost:PORT" or "[::1]:PORT". Anything that is not
// a loopback address is refused (invalid_argument naming the address): the proxy
// is a test tool and must never be reachable from, or aim at, another machine.
// `allow_port_zero` is for the listen address.
Result<HostPort> parse_loopback(std::string_view text, bool allow_port_zero);

}  // namespace fieldsync::faultproxy
