// Form definitions: parsing, refusal of bad definitions, validation of values.
#include <catch2/catch.hpp>

#include "fieldsync/form.hpp"

using namespace fieldsync;

namespace {

const char* kForm = R"({
  "id": "kla-desa", "version": 3, "title": "Survei KLA desa",
  "key": ["desa_code", "period"],
  "fields": [
    {"name": "desa_code", "type": "text", "required": true, "min": 4, "max": 20},
    {"name": "period", "type": "text", "required": true},
    {"name": "children", "type": "integer", "min": 0, "max": 100000, "indicator": 4, "aggregate": "sum"},
    {"name": "share", "type": "decimal", "min": 0, "max": 1},
    {"name": "has_forum_anak", "type": "boolean", "indicator": 6, "aggregate": "count_true"},
    {"name": "visited", "type": "date", "min": "2020-01-01", "max": "2030-12-31"},
    {"name": "status", "type": "select_one", "choices": ["draft", "final"]},
    {"name": "services", "type": "select_multiple", "choices": ["paud", "posyandu", "library"], "max": 2},
    {"name": "location", "type": "geopoint"},
    {"name": "photo", "type": "photo"},
    {"name": "note", "type": "text", "label": "Catatan", "hint": "singkat"}
  ]})";

Form form() { return Form::parse_text(kForm).value(); }

}  // namespace

TEST_CASE("a form definition parses and round-trips", "[protocol][forms]") {
  auto f = Form::parse_text(kForm);
  REQUIRE(f);
  CHECK(f->id == "kla-desa");
  CHECK(f->version == 3);
  CHECK(f->fields.size() == 11);
  CHECK(f->key == std::vector<std::string>{"desa_code", "period"});
  REQUIRE(f->field("children"));
  CHECK(f->field("children")->indicator == 4);
  CHECK(f->field("children")->aggregate == Aggregate::sum);
  auto again = Form::parse(f->to_json());
  REQUIRE(again);
  CHECK(again->to_json() == f->to_json());
  Form g = *again;
  g.version = 9;
  CHECK(g.same_definition(*f));
  g.fields[0].required = false;
  CHECK_FALSE(g.same_definition(*f));
}

TEST_CASE("bad form definitions are refused naming the place", "[protocol][forms]") {
  struct Case {
    const char* text;
    const char* where;
  };
  const Case cases[] = {
      {R"([])", ""},
      {R"({"id": "x", "fields": []})", "fields"},
      {R"({"fields": [{"name": "a", "type": "text"}]})", "id"},
      {R"({"id": "Bad Id", "fields": [{"name": "a", "type": "text"}]})", "id"},
      {R"({"id": "x", "colour": 1, "fields": [{"name": "a", "type": "text"}]})", "colour"},
      {R"({"id": "x", "fields": [{"name": "a", "type": "txt"}]})", "fields[0].type"},
      {R"({"id": "x", "fields": [{"name": "A", "type": "text"}]})", "fields[0].name"},
      {R"({"id": "x", "fields": [{"name": "a", "type": "text"}, {"name": "a", "type": "integer"}]})", "fields[1].name"},
      {R"({"id": "x", "fields": [{"name": "a", "type": "text", "colour": "red"}]})", "fields[0].colour"},
      {R"({"id": "x", "fields": [{"name": "a", "type": "select_one"}]})", "fields[0].choices"},
      {R"({"id": "x", "fields": [{"name": "a", "type": "select_one", "choices": ["p", "p"]}]})", "fields[0].choices"},
      {R"({"id": "x", "fields": [{"name": "a", "type": "integer", "choices": ["p"]}]})", "fields[0].choices"},
      {R"({"id": "x", "fields": [{"name": "a", "type": "integer", "min": 1.5}]})", "fields[0].min"},
      {R"({"id": "x", "fields": [{"name": "a", "type": "integer", "min": 5, "max": 1}]})", "fields[0].min"},
      {R"({"id": "x", "fields": [{"name": "a", "type": "date", "min": "2020-13-01"}]})", "fields[0].min"},
      {R"({"id": "x", "fields": [{"name": "a", "type": "boolean", "max": 1}]})", "fields[0].max"},
      {R"({"id": "x", "fields": [{"name": "a", "type": "text", "required": "yes"}]})", "fields[0].required"},
      {R"({"id": "x", "fields": [{"name": "a", "type": "text", "aggregate": "sum"}]})", "fields[0].aggregate"},
      {R"({"id": "x", "fields": [{"name": "a", "type": "integer", "aggregate": "share_true"}]})", "fields[0].aggregate"},
      {R"({"id": "x", "key": ["b"], "fields": [{"name": "a", "type": "text"}]})", "key"},
      {R"({"id": "x", "version": -1, "fields": [{"name": "a", "type": "text"}]})", "version"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    auto r = Form::parse_text(c.text);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::validation);
    CHECK(r.error().field == c.where);
    CHECK_FALSE(r.error().message.empty());
  }
  auto not_json = Form::parse_text("{\"id\": ");
  REQUIRE_FALSE(not_json);
  CHECK(not_json.error().code == Errc::invalid_argument);
}

TEST_CASE("values are validated against their field type and bounds", "[protocol][forms][validation]") {
  Form f = form();
  struct Case {
    const char* field;
    json value;
    bool ok;
  };
  const Case cases[] = {
      {"children", 0, true},
      {"children", 100000, true},
      {"children", -1, false},
      {"children", 100001, false},
      {"children", 1.0, false},
      {"children", "12", false},
      {"children", json::parse("18446744073709551615"), false},
      {"share", 0.5, true},
      {"share", 1, true},
      {"share", 1.01, false},
      {"share", true, false},
      {"desa_code", "14.03.01.2001", true},
      {"desa_code", "14", false},
      {"desa_code", "14.03.01.2001.99999999", false},
      {"note", "Desa Pangkalan Libut — ada 12 anak", true},
      {"note", std::string(10001, 'x'), false},
      {"note", 5, false},
      {"has_forum_anak", true, true},
      {"has_forum_anak", 1, false},
      {"has_forum_anak", "true", false},
      {"visited", "2026-11-28", true},
      {"visited", "2026-02-29", false},
      {"visited", "2019-12-31", false},
      {"visited", "28-11-2026", false},
      {"status", "final", true},
      {"status", "Final", false},
      {"services", json::array({"paud", "library"}), true},
      {"services", json::array(), true},
      {"services", json::array({"paud", "paud"}), false},
      {"services", json::array({"paud", "posyandu", "library"}), false},
      {"services", json::array({"mall"}), false},
      {"services", "paud", false},
      {"location", json{{"lat", 1.47}, {"lon", 102.1}}, true},
      {"location", json{{"lat", 91}, {"lon", 102.1}}, false},
      {"location", json{{"lat", 1.47}}, false},
      {"location", json{{"lat", 1.47}, {"lon", 102.1}, {"x", 1}}, false},
      {"photo", "photos/abc.jpg", true},
      {"photo", "", false},
      {"nope", 1, false},
      {"note", nullptr, true},
      {"desa_code", nullptr, false},
  };
  for (const auto& c : cases) {
    INFO(c.field << " = " << c.value.dump());
    auto r = f.validate_value(c.field, c.value);
    CHECK(r.ok() == c.ok);
    if (!r) {
      CHECK(r.error().code == Errc::validation);
      CHECK(r.error().field == c.field);
    }
  }
}

TEST_CASE("messages speak to the officer", "[protocol][forms][validation]") {
  Form f = form();
  CHECK(f.validate_value("children", -1).error().message == "must be at least 0");
  CHECK(f.validate_value("status", "x").error().message == "must be one of: draft, final");
  CHECK(f.validate_value("nope", 1).error().message == "is not a field of form kla-desa");
}

TEST_CASE("required fields on create, and never cleared", "[protocol][forms][validation]") {
  Form f = form();
  CHECK(f.validate_fields({{"desa_code", "14.03.01.2001"}, {"period", "2026"}}, true));
  auto missing = f.validate_fields({{"desa_code", "14.03.01.2001"}}, true);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().field == "period");
  CHECK(f.validate_fields({{"children", 3}}, false));
  auto cleared = f.validate_fields({{"period", nullptr}}, false);
  REQUIRE_FALSE(cleared);
  CHECK(cleared.error().field == "period");
  CHECK_FALSE(f.validate_fields(json::array(), false));
}

TEST_CASE("values_equal: numbers by value, select_multiple as a set", "[protocol][forms]") {
  CHECK(values_equal(1, 1.0));
  CHECK(values_equal(json::array({"a", "b"}), json::array({"b", "a"})));
  CHECK_FALSE(values_equal(json::array({"a", "a"}), json::array({"a", "b"})));
  CHECK(values_equal(json{{"lat", 1}, {"lon", 2}}, json{{"lon", 2.0}, {"lat", 1.0}}));
  CHECK_FALSE(values_equal("1", 1));
  CHECK_FALSE(values_equal(nullptr, false));
}
