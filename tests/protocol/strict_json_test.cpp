// parse_strict_json: the strict decoding of request bodies (docs/protocol.md,
// "Transport and encodings"): RFC 8259 only, a nesting cap, no duplicate members.
#include <catch2/catch.hpp>

#include <string>

#include "fieldsync/protocol.hpp"

using namespace fieldsync;

TEST_CASE("strict JSON takes well-formed bodies as they are", "[protocol][strict]") {
  auto j = parse_strict_json(
      R"({"device_id": "d", "changes": [{"id": "d:1", "fields": {"a": 1, "b": [1, {"a": 2}]}},
          {"id": "d:2", "fields": {"a": 1}}], "since": 0})",
      64);
  REQUIRE(j);
  CHECK((*j)["changes"][1]["id"] == "d:2");
  // The same name in different objects, sibling or nested, is not a duplicate.
  CHECK(parse_strict_json(R"({"a": {"a": {"a": 1}}, "b": {"a": 2}})", 64));
  CHECK(parse_strict_json(R"([{"a": 1}, {"a": 2}])", 64));
  // "\u0000" is a valid string (a NUL character), kept as it is.
  auto nul = parse_strict_json(R"({"a": "x\u0000y"})", 64);
  REQUIRE(nul);
  CHECK((*nul)["a"].get<std::string>() == std::string("x\0y", 3));
}

TEST_CASE("strict JSON refuses duplicate member names", "[protocol][strict]") {
  for (const char* text : {
           R"({"a": 1, "a": 1})", R"({"a": 1, "b": 2, "a": 3})",
           R"({"device_id": "d", "changes": [{"id": "d:1", "id": "d:2"}]})",
           R"([{"x": {"y": {"k": 1, "k": null}}}])",
           R"({"a": 1, "\u0061": 2})",  // the same name, escaped
       }) {
    INFO(text);
    auto j = parse_strict_json(text, 64);
    REQUIRE_FALSE(j);
    CHECK(j.error().code == Errc::invalid_argument);
    CHECK_THAT(j.error().message, Catch::Contains("twice"));
  }
}

TEST_CASE("strict JSON refuses deep nesting early and non-JSON", "[protocol][strict]") {
  const std::string ok = std::string(64, '[') + std::string(64, ']');
  CHECK(parse_strict_json(ok, 64));
  const std::string deep = std::string(65, '[') + std::string(65, ']');
  auto j = parse_strict_json(deep, 64);
  REQUIRE_FALSE(j);
  CHECK_THAT(j.error().message, Catch::Contains("nested more than 64"));
  // A hundred thousand unclosed '[' stop at the cap, not at the end of the text.
  auto huge = parse_strict_json(std::string(100000, '['), 64);
  REQUIRE_FALSE(huge);
  CHECK_THAT(huge.error().message, Catch::Contains("nested"));
  for (const std::string& text : {std::string("{\"a\": NaN}"), std::string("{\"a\": 1e400}"),
                                  std::string("{\"a\": \"\xff\"}"), std::string("{\"a\": 1} x"),
                                  std::string("// c\n{}"), std::string("{\"a\": \"\\ud800\"}")}) {
    INFO(text);
    auto bad = parse_strict_json(text, 64);
    REQUIRE_FALSE(bad);
    CHECK_THAT(bad.error().message, Catch::Contains("not valid JSON"));
  }
}
