// Hybrid logical clock: text form, parsing, monotonicity under clock jumps.
#include <catch2/catch.hpp>

#include <random>

#include "fieldsync/hlc.hpp"

using namespace fieldsync;

TEST_CASE("HLC text round-trips and parsing is strict", "[protocol][hlc]") {
  Hlc h{1795857243120, 3};
  CHECK(h.to_string() == "2026-11-28T09:14:03.120Z/0003");
  auto p = Hlc::parse("2026-11-28T09:14:03.120Z/0003");
  REQUIRE(p);
  CHECK(*p == h);
  for (const char* bad : {"", "2026-11-28T09:14:03.120Z", "2026-11-28T09:14:03Z/0003",
                          "2026-02-30T09:14:03.120Z/0003", "2026-11-28T24:00:00.000Z/0001",
                          "2026-11-28T09:14:03.120+07:00/0003", "2026-11-28T09:14:03.120Z/003",
                          "2026-11-28T09:14:03.120Z/00a3", "1969-12-31T23:59:59.999Z/0000",
                          "2026-11-28 09:14:03.120Z/0003"}) {
    INFO(bad);
    auto r = Hlc::parse(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::validation);
    CHECK(r.error().field == "hlc");
  }
}

TEST_CASE("RFC 3339 millisecond times", "[protocol][hlc]") {
  CHECK(format_rfc3339_ms(0) == "1970-01-01T00:00:00.000Z");
  CHECK(format_rfc3339_ms(951782400000) == "2000-02-29T00:00:00.000Z");
  auto t = parse_rfc3339_ms("2000-02-29T00:00:00.5Z");
  REQUIRE(t);
  CHECK(*t == 951782400500);
  CHECK(parse_rfc3339_ms("2000-02-29T00:00:00+00:00").value() == 951782400000);
  CHECK_FALSE(parse_rfc3339_ms("2000-02-29T00:00:00+07:00"));
  CHECK_FALSE(parse_rfc3339_ms("yesterday"));
}

TEST_CASE("HLC stays strictly increasing when the wall clock jumps", "[protocol][hlc]") {
  for (unsigned seed = 1; seed <= 50; ++seed) {
    std::mt19937 rng(seed);
    std::int64_t wall = 1795857243120;
    HlcClock clock([&] { return wall; });
    Hlc prev = clock.now();
    for (int i = 0; i < 3000; ++i) {
      int roll = static_cast<int>(rng() % 10);
      if (roll < 5) wall += rng() % 50;                // normal progress
      else if (roll < 7) wall -= rng() % 3600000;     // jump back up to an hour
      else if (roll == 7) clock.observe({wall + static_cast<std::int64_t>(rng() % 100000), 7});
      Hlc next = clock.now();
      REQUIRE(next > prev);
      REQUIRE(next.counter <= Hlc::kMaxCounter);
      // And it survives a text round trip (what the store persists).
      REQUIRE(Hlc::parse(next.to_string()).value() == next);
      prev = next;
    }
  }
}

TEST_CASE("HLC ignores remote times far in the future", "[protocol][hlc]") {
  std::int64_t wall = 1795857243120;
  HlcClock clock([&] { return wall; });
  clock.observe({wall + 48LL * 3600 * 1000, 0});
  CHECK(clock.now().millis == wall);
  clock.observe({wall + 1000, 5});
  Hlc n = clock.now();
  CHECK(n.millis == wall + 1000);
  CHECK(n.counter == 6);
}

TEST_CASE("HLC counter overflow moves the time forward", "[protocol][hlc]") {
  std::int64_t wall = 1000;
  HlcClock clock([&] { return wall; }, Hlc{5000, Hlc::kMaxCounter});
  Hlc n = clock.now();
  CHECK(n.millis == 5001);
  CHECK(n.counter == 0);
}
