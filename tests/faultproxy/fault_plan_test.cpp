// Unit and property tests of the faultproxy's pure parts: seeded plans, offsets,
// link shaping and the loopback rule (tools/faultproxy/fault_plan.hpp).
#include <catch2/catch.hpp>

#include <cmath>

#include "fault_plan.hpp"

using namespace fieldsync::faultproxy;

TEST_CASE("plans depend on seed and connection id only", "[faultproxy][plan]") {
  FaultRates rates{0.2, 0.1, 0.15, 0.5, 100};
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    int differing = 0;
    for (std::uint64_t id = 1; id <= 200; ++id) {
      auto a = plan_connection(seed, id, rates), b = plan_connection(seed, id, rates);
      REQUIRE(a.kind == b.kind);
      REQUIRE(a.direction == b.direction);
      REQUIRE(a.offset_fraction == b.offset_fraction);
      REQUIRE(a.delayed == b.delayed);
      auto c = plan_connection(seed + 1000, id, rates);
      if (c.kind != a.kind || c.offset_fraction != a.offset_fraction) ++differing;
    }
    CHECK(differing > 150);  // another seed is another sequence
  }
}

TEST_CASE("fault kinds follow the configured rates", "[faultproxy][plan]") {
  FaultRates rates{0.2, 0.1, 0.15, 0.3, 50};
  const int n = 20000;
  for (std::uint64_t seed : {1ULL, 7ULL, 42ULL, 123456789ULL, 0xDEADBEEFULL}) {
    int drop = 0, reset = 0, truncate = 0, delayed = 0, up = 0, dropped_or_reset = 0;
    for (int id = 1; id <= n; ++id) {
      auto p = plan_connection(seed, static_cast<std::uint64_t>(id), rates);
      REQUIRE(p.offset_fraction >= 0.0);
      REQUIRE(p.offset_fraction < 1.0);
      drop += p.kind == FaultKind::drop;
      reset += p.kind == FaultKind::reset;
      truncate += p.kind == FaultKind::truncate;
      delayed += p.delayed;
      if (p.kind == FaultKind::truncate) REQUIRE(p.direction == Direction::down);
      if (p.kind == FaultKind::drop || p.kind == FaultKind::reset) {
        ++dropped_or_reset;
        up += p.direction == Direction::up;
      }
    }
    // Binomial tolerance: 5 standard deviations.
    auto near = [&](int count, double p) {
      return std::abs(count - n * p) <= 5 * std::sqrt(n * p * (1 - p));
    };
    CHECK(near(drop, 0.2));
    CHECK(near(reset, 0.1));
    CHECK(near(truncate, 0.15));
    CHECK(near(delayed, 0.3));
    CHECK(std::abs(up - dropped_or_reset * 0.5) <= 5 * std::sqrt(dropped_or_reset * 0.25));
  }
}

TEST_CASE("zero rates inject nothing and delays need delay_ms", "[faultproxy][plan]") {
  FaultRates none{};
  for (std::uint64_t id = 1; id <= 5000; ++id) {
    auto p = plan_connection(99, id, none);
    REQUIRE(p.kind == FaultKind::none);
    REQUIRE_FALSE(p.delayed);  // delay rate 1 but delay_ms 0
  }
}

TEST_CASE("fault offsets stay inside the first chunk", "[faultproxy][plan]") {
  for (std::uint64_t id = 1; id <= 3000; ++id) {
    auto p = plan_connection(5, id, FaultRates{0.4, 0.3, 0.3, 0, 0});
    for (std::size_t n : {1u, 2u, 3u, 100u, 65536u}) {
      auto off = fault_offset(p, n);
      REQUIRE(off < n);
      if (p.kind == FaultKind::truncate) REQUIRE(off >= n / 2);
    }
  }
  ConnectionPlan last{FaultKind::drop, Direction::up, std::nextafter(1.0, 0.0), false};
  CHECK(fault_offset(last, 10) == 9);
  ConnectionPlan first{FaultKind::drop, Direction::up, 0.0, false};
  CHECK(fault_offset(first, 10) == 0);
}

TEST_CASE("rates are checked", "[faultproxy][plan]") {
  CHECK(check_rates(FaultRates{0.5, 0.5, 0, 1, 0}).ok());
  CHECK_FALSE(check_rates(FaultRates{0.5, 0.4, 0.2, 1, 0}).ok());
  CHECK_FALSE(check_rates(FaultRates{-0.1, 0, 0, 1, 0}).ok());
  CHECK_FALSE(check_rates(FaultRates{0, 0, 0, 1.5, 0}).ok());
  CHECK_FALSE(check_rates(FaultRates{0, 0, 0, 1, -5}).ok());
}

TEST_CASE("link profiles match the documented figures", "[faultproxy][shaping]") {
  auto two_g = link_profile("2g");
  REQUIRE(two_g.ok());
  CHECK(two_g->bandwidth_bps == 50'000);
  CHECK(two_g->rtt_ms == 600);
  CHECK(link_profile("3g")->bandwidth_bps == 1'000'000);
  CHECK(link_profile("3g")->rtt_ms == 200);
  CHECK(link_profile("satellite")->bandwidth_bps == 2'000'000);
  CHECK(link_profile("satellite")->rtt_ms == 1200);
  CHECK(link_profile("lan")->shapes());
  CHECK_FALSE(link_profile("none")->shapes());
  CHECK_FALSE(link_profile("5g").ok());
}

TEST_CASE("the shaper serialises at the bandwidth and adds half the RTT", "[faultproxy][shaping]") {
  LinkShaper two_g(*link_profile("2g"));
  // 6250 bytes at 50 kbit/s take one second, then 300 ms one-way latency.
  CHECK(two_g.schedule(0, 6250) == 1'300'000);
  // A chunk arriving while the link is busy waits for it.
  CHECK(two_g.schedule(500'000, 6250) == 2'300'000);
  // A chunk arriving after the link went idle starts at once.
  CHECK(two_g.schedule(10'000'000, 625) == 10'400'000);
  // Deliveries never go backwards, also past an extra delay.
  CHECK(two_g.push_back_to(11'000'000) == 11'000'000);
  CHECK(two_g.schedule(10'500'000, 0) >= 11'000'000);

  LinkShaper unshaped(LinkProfile{});
  CHECK(unshaped.schedule(1234, 1 << 20) == 1234);
}

TEST_CASE("only loopback addresses are accepted", "[faultproxy][address]") {
  auto ok = parse_loopback("127.0.0.1:0", true);
  REQUIRE(ok.ok());
  CHECK(ok->host == "127.0.0.1");
  CHECK(ok->port == 0);
  CHECK(parse_loopback("localhost:8080", false)->host == "127.0.0.1");
  CHECK(parse_loopback("127.1.2.3:80", false).ok());
  CHECK(parse_loopback("[::1]:443", false)->host == "::1");

  CHECK_FALSE(parse_loopback("127.0.0.1:0", false).ok());  // upstream needs a port
  for (const char* bad : {"0.0.0.0:8080", "10.0.0.1:80", "192.168.1.10:80", "8.8.8.8:53", "[::]:80",
                          "[::ffff:8.8.8.8]:53", "example.com:80", "127.0.0.1", "127.0.0.1:99999",
                          "127.0.0.1:-1", "127.0.0.1:http", ":80"}) {
    INFO(bad);
    auto r = parse_loopback(bad, true);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == fieldsync::Errc::invalid_argument);
  }
  CHECK(parse_loopback("10.0.0.1:80", true).error().message.find("non-loopback") !=
        std::string::npos);
}
