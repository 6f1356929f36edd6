// Seeded fault plans, link profiles and the loopback rule of fieldsync-faultproxy.
#include "fault_plan.hpp"

#include <algorithm>
#include <charconv>

#include <boost/asio/ip/address.hpp>

namespace fieldsync::faultproxy {
namespace {

// SplitMix64: tiny, well mixed, and identical on every platform and standard
// library (std::uniform_real_distribution is not), which keeps runs reproducible.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 bits.
  double unit() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t state_;
};

bool in_unit_range(double p) { return p >= 0.0 && p <= 1.0; }

}  // namespace

std::string_view fault_kind_name(FaultKind k) noexcept {
  switch (k) {
    case FaultKind::none: return "none";
    case FaultKind::drop: return "drop";
    case FaultKind::reset: return "reset";
    case FaultKind::truncate: return "truncate";
  }
  return "none";
}

std::string_view direction_name(Direction d) noexcept { return d == Direction::up ? "up" : "down"; }

Result<void> check_rates(const FaultRates& r) {
  for (auto [name, p] : {std::pair{"drop-rate", r.drop}, std::pair{"reset-rate", r.reset},
                         std::pair{"truncate-rate", r.truncate}, std::pair{"delay-rate", r.delay}})
    if (!in_unit_range(p)) return Error(Errc::invalid_argument, std::string(name) + " must be between 0 and 1");
  if (r.drop + r.reset + r.truncate > 1.0 + 1e-9)
    return Error(Errc::invalid_argument, "drop-rate + reset-rate + truncate-rate must not exceed 1");
  if (r.delay_ms < 0) return Error(Errc::invalid_argument, "delay-ms must be >= 0");
  return {};
}

ConnectionPlan plan_connection(std::uint64_t seed, std::uint64_t connection_id,
                               const FaultRates& rates) noexcept {
  // Mix the id through one SplitMix step so neighbouring ids give unrelated streams.
  SplitMix64 rng(seed ^ SplitMix64(connection_id).next());
  // Always draw the same number of values, whatever the rates, so that changing
  // one rate does not reshuffle the other decisions.
  double kind = rng.unit(), direction = rng.unit(), offset = rng.unit(), delay = rng.unit();
  ConnectionPlan plan;
  if (kind < rates.drop) {
    plan.kind = FaultKind::drop;
  } else if (kind < rates.drop + rates.reset) {
    plan.kind = FaultKind::reset;
  } else if (kind < rates.drop + rates.reset + rates.truncate) {
    plan.kind = FaultKind::truncate;
  }
  plan.direction = plan.kind == FaultKind::truncate || direction >= 0.5 ? Direction::down : Direction::up;
  plan.offset_fraction = offset;
  plan.delayed = rates.delay_ms > 0 && delay < rates.delay;
  return plan;
}

std::size_t fault_offset(const ConnectionPlan& plan, std::size_t n) noexcept {
  if (n == 0) return 0;
  std::size_t lo = plan.kind == FaultKind::truncate ? n / 2 : 0;
  auto span = static_cast<double>(n - lo);
  auto off = lo + static_cast<std::size_t>(plan.offset_fraction * span);
  return std::min(off, n - 1);
}

Result<LinkProfile> link_profile(std::string_view name) {
  if (name == "none" || name.empty()) return LinkProfile{};
  if (name == "2g") return LinkProfile{"2g", 50'000, 600};
  if (name == "3g") return LinkProfile{"3g", 1'000'000, 200};
  if (name == "satellite") return LinkProfile{"satellite", 2'000'000, 1200};
  if (name == "lan") return LinkProfile{"lan", 100'000'000, 1};
  return Error(Errc::invalid_argument,
               "unknown profile '" + std::string(name) + "' (known: 2g, 3g, satellite, lan, none)");
}

std::int64_t LinkShaper::schedule(std::int64_t arrival_us, std::size_t n) noexcept {
  std::int64_t tx_us = 0;
  if (profile_.bandwidth_bps > 0)
    tx_us = static_cast<std::int64_t>(n) * 8 * 1'000'000 / profile_.bandwidth_bps;
  std::int64_t start = std::max(arrival_us, link_free_us_);
  link_free_us_ = start + tx_us;
  std::int64_t deliver = link_free_us_ + profile_.rtt_ms * 1000 / 2;
  last_delivery_us_ = std::max(last_delivery_us_, deliver);
  return last_delivery_us_;
}

std::int64_t LinkShaper::push_back_to(std::int64_t deliver_us) noexcept {
  last_delivery_us_ = std::max(last_delivery_us_, deliver_us);
  return last_delivery_us_;
}

Result<HostPort> parse_loopback(std::string_view text, bool allow_port_zero) {
  auto refuse = [&](const std::string& why) {
    return Error(Errc::invalid_argument, "'" + std::string(text) + "': " + why);
  };
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return refuse("expected HOST:PORT");
  std::string_view host = text.substr(0, colon), port_text = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned port = 0;
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || p != port_text.data() + port_text.size() || port > 65535)
    return refuse("the port must be a number from 0 to 65535");
  if (port == 0 && !allow_port_zero) return refuse("the port must not be 0");
  std::string h = host == "localhost" ? std::string("127.0.0.1") : std::string(host);
  boost::system::error_code bec;
  auto addr = boost::asio::ip::make_address(h, bec);
  if (bec) return refuse("the host must be a numeric loopback address (127.0.0.1 or [::1])");
  if (!addr.is_loopback())
    return refuse("refusing a non-loopback address: fieldsync-faultproxy only works on 127.0.0.0/8 and ::1");
  return HostPort{addr.to_string(), static_cast<std::uint16_t>(port)};
}

}  // namespace fieldsync::faultproxy
