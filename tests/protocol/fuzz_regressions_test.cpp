// Regression tests for what the libFuzzer targets (fuzz/) found in the protocol
// library, one case per finding, with the input that exposed it (issue #5).
#include <catch2/catch.hpp>

#include "fieldsync/protocol.hpp"

using namespace fieldsync;

TEST_CASE("issue 5: integer members of server messages refuse floats, booleans and overflow",
          "[protocol][fuzz][issue5]") {
  // fuzz_sync_response: a conflict id written as an integer literal too large for
  // 64 bits parses as a double, and get<int64_t>() converted it with undefined
  // behaviour (UBSan: "outside the range of representable values of type long").
  auto found = json::parse(R"({"id": "0193a1c2-0000-4abc-8def-0123456789ab:18", "status": "conflict",
    "seq": 2002, "versions": {"has_forum_anak": 35},
    "conflicts": [{"id": 1844674407370955161577, "kind": "field", "field": "has_forum_anak"}]})");
  auto r = ChangeResult::from_json(found);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::protocol);

  const char* bad_numbers[] = {"1e300", "-1e300", "2002.0", "2002.5", "true", "18446744073709551615",
                               "9223372036854775808"};
  for (const char* bad : bad_numbers) {
    INFO(bad);
    auto number = json::parse(bad);
    CHECK_FALSE(SyncResponse::from_json(json{{"cursor", number}, {"more", false}}).ok());
    CHECK_FALSE(ChangeResult::from_json(json{{"id", "d:1"}, {"status", "applied"}, {"seq", number}}).ok());
    json entry = {{"seq", 1}, {"record", "r"}, {"op", "upsert"}};
    entry["form_version"] = number;
    CHECK_FALSE(LogEntry::from_json(entry).ok());
    entry["form_version"] = 1;
    entry["seq"] = number;
    CHECK_FALSE(LogEntry::from_json(entry).ok());
  }
  // The largest int64 and negative integers still decode as before.
  auto max = SyncResponse::from_json(json::parse(R"({"cursor": 9223372036854775807, "more": true})"));
  REQUIRE(max.ok());
  CHECK(max->cursor == 9223372036854775807);
  auto negative = ChangeResult::from_json(json{{"id", "d:1"}, {"status", "applied"}, {"seq", -1}});
  REQUIRE(negative.ok());
  CHECK(negative->seq == -1);
}

TEST_CASE("issue 5: a rejected result survives decode(encode(x)) == x", "[protocol][fuzz][issue5]") {
  // fuzz_sync_response's round-trip property: a rejected result carrying a seq,
  // versions or conflicts decoded with them, but to_json() writes none of them
  // for a rejected change, so the re-decoded value differed.
  auto j = json::parse(R"({"id": "dev-1:20", "status": "rejected", "seq": 5,
    "versions": {"a": 3}, "conflicts": [{"id": 7, "kind": "field", "field": "a"}],
    "error": {"code": "validation", "field": "a", "message": "must be >= 0"}})");
  auto x = ChangeResult::from_json(j);
  REQUIRE(x.ok());
  CHECK(x->seq == 0);
  CHECK(x->versions.empty());
  CHECK(x->conflicts.empty());
  REQUIRE(x->error.has_value());
  CHECK(x->error->code == "validation");
  auto again = ChangeResult::from_json(x->to_json());
  REQUIRE(again.ok());
  CHECK(*again == *x);

  SyncResponse response;
  response.results = {*x};
  response.cursor = 9;
  auto decoded = SyncResponse::from_json(response.to_json());
  REQUIRE(decoded.ok());
  CHECK(decoded->results == response.results);
}
