// UUIDs, change ids, region codes and the scope rule.
#include <catch2/catch.hpp>

#include <set>

#include "fieldsync/ids.hpp"

using namespace fieldsync;

TEST_CASE("UUIDv4 and v7 are well-formed and unique", "[protocol][ids]") {
  std::set<std::string> seen;
  for (int i = 0; i < 2000; ++i) {
    auto a = new_uuid_v4();
    auto b = new_uuid_v7();
    REQUIRE(is_uuid(a));
    REQUIRE(is_uuid(b));
    CHECK(a[14] == '4');
    CHECK(b[14] == '7');
    CHECK(std::string("89ab").find(a[19]) != std::string::npos);
    REQUIRE(seen.insert(a).second);
    REQUIRE(seen.insert(b).second);
  }
}

TEST_CASE("UUIDv7 sorts by its timestamp", "[protocol][ids]") {
  auto a = new_uuid_v7(1700000000000);
  auto b = new_uuid_v7(1700000000001);
  auto c = new_uuid_v7(1800000000000);
  CHECK(a < b);
  CHECK(b < c);
  CHECK(a.substr(0, 13) == "018bcfe5-6800");
}

TEST_CASE("is_uuid is strict", "[protocol][ids]") {
  CHECK(is_uuid("0193a1c2-0000-7000-8000-000000000000"));
  CHECK(is_uuid("0193A1C2-0000-7000-8000-000000000000"));
  for (const char* bad : {"", "0193a1c2000070008000000000000000", "0193a1c2-0000-7000-8000-00000000000",
                          "0193a1c2-0000-7000-8000-00000000000g", "'; DROP TABLE records; --"}) {
    INFO(bad);
    CHECK_FALSE(is_uuid(bad));
  }
}

TEST_CASE("change ids parse as <device_id>:<counter>", "[protocol][ids]") {
  auto c = ChangeId::parse("0193a1c2-0000-7000-8000-000000000000:17");
  REQUIRE(c);
  CHECK(c->device_id == "0193a1c2-0000-7000-8000-000000000000");
  CHECK(c->counter == 17);
  CHECK(c->to_string() == "0193a1c2-0000-7000-8000-000000000000:17");
  for (const char* bad : {"dev", "dev:", ":1", "dev:0", "dev:-1", "dev:01", "dev:1x", "de v:1",
                          "dev:99999999999999999999", "dev/x:1"}) {
    INFO(bad);
    CHECK_FALSE(ChangeId::parse(bad));
  }
}

TEST_CASE("a scope covers whole dot-separated prefixes only", "[protocol][ids][scope]") {
  CHECK(scope_covers("14.03.01", "14.03.01"));
  CHECK(scope_covers("14.03.01", "14.03.01.2001"));
  CHECK(scope_covers("14", "14.03.01.2001"));
  CHECK_FALSE(scope_covers("14.03.01", "14.03.010"));
  CHECK_FALSE(scope_covers("14.03.01", "14.03.02.2001"));
  CHECK_FALSE(scope_covers("14.03.01", "14.03"));
  CHECK_FALSE(scope_covers("", "14.03"));
}

TEST_CASE("region codes", "[protocol][ids]") {
  CHECK(is_valid_region_code("14"));
  CHECK(is_valid_region_code("14.03.01.2001"));
  for (const char* bad : {"", ".14", "14.", "14..03", "14.03a", "14 03", "1.2.3.4.5.6.7.8.9"}) {
    INFO(bad);
    CHECK_FALSE(is_valid_region_code(bad));
  }
}
