// The shipped KLA village survey (forms/kla-desa.json) and the demo region list
// (forms/bengkalis-regions.json): they parse, cover the 24 indicators with
// aggregates that fit their types, and validate real records and refuse mistakes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>

#include "fieldsync/form.hpp"

using namespace fieldsync;

namespace {

constexpr int kIndicatorCount = 24;

std::string read_source_file(const std::string& relative) {
  std::ifstream in(std::string(FIELDSYNC_SOURCE_DIR) + "/" + relative, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

Form kla_form() {
  auto form = Form::parse_text(read_source_file("forms/kla-desa.json"));
  if (!form) FAIL("forms/kla-desa.json does not parse: " << form.error().to_string());
  return std::move(form).value();
}

// A plausible value for `f`, drawn within its bounds (a count is kept small, as
// in one village).
json plausible_value(const FieldDef& f, std::mt19937_64& rng) {
  switch (f.type) {
    case FieldType::integer: {
      std::int64_t lo = f.min ? f.min->get<std::int64_t>() : 0;
      std::int64_t hi = f.max ? f.max->get<std::int64_t>() : lo + 1000;
      hi = std::min(hi, lo + 3000);
      return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
    }
    case FieldType::boolean:
      return std::bernoulli_distribution(0.5)(rng);
    case FieldType::text: {
      std::int64_t lo = f.min ? f.min->get<std::int64_t>() : 0;
      std::int64_t hi = f.max ? f.max->get<std::int64_t>() : 200;
      auto n = std::uniform_int_distribution<std::int64_t>(lo, std::min(hi, lo + 120))(rng);
      // Bahasa Indonesia with a non-ASCII letter: length counts characters, not bytes.
      std::string s;
      for (std::int64_t i = 0; i < n; ++i) s += (i % 7 == 3) ? "\xC3\xA9" : "a";
      return s;
    }
    default:
      FAIL("the KLA form has a field type this test does not know: " << f.name);
  }
  return nullptr;
}

json realistic_record() {
  return {
      {"desa_code", "14.03.02.2001"},
      {"period", "2026"},
      {"officer_notes", "Data akta dari Disdukcapil; posyandu Melati tutup sementara."},
      {"has_kla_village_regulation", true},
      {"kla_regulation_ref", "Perdes No. 3 Tahun 2025"},
      {"has_kla_task_force", true},
      {"community_orgs_involved", 4},
      {"children_total", 1240},
      {"children_with_birth_certificate", 1187},
      {"has_child_info_facility", false},
      {"has_forum_anak", true},
      {"child_marriages", 2},
      {"has_child_marriage_prevention", true},
      {"has_parenting_counselling", true},
      {"has_alternative_care_institution", false},
      {"children_in_alternative_care", 0},
      {"has_paud_hi", true},
      {"child_friendly_play_spaces", 1},
      {"has_safe_school_route", false},
      {"births", 61},
      {"births_in_health_facility", 57},
      {"children_under_five", 402},
      {"stunted_children_under_five", 38},
      {"infants_under_six_months", 30},
      {"infants_exclusively_breastfed", 19},
      {"active_posyandu", 3},
      {"has_child_friendly_health_service", true},
      {"households_total", 1010},
      {"households_safe_water", 744},
      {"households_proper_sanitation", 802},
      {"has_smoke_free_area", true},
      {"has_tobacco_ad_ban", false},
      {"children_out_of_school", 17},
      {"schools_total", 6},
      {"child_friendly_schools", 2},
      {"has_child_creativity_center", false},
      {"violence_victims", 3},
      {"violence_victims_served", 3},
      {"has_patbm", true},
      {"special_protection_children", 1},
      {"special_protection_served", 1},
      {"children_with_disabilities", 9},
      {"children_with_disabilities_served", 6},
      {"children_in_conflict_with_law", 0},
      {"children_in_conflict_with_law_served", 0},
  };
}

// The field an upsert is refused for, or "" when it is accepted.
std::string refused_field(const Form& form, const json& fields, bool creating) {
  auto r = form.validate_fields(fields, creating);
  if (r) return "";
  if (r.error().code != Errc::validation) return "(not a validation error) " + r.error().to_string();
  return r.error().field;
}

}  // namespace

TEST_CASE("the shipped KLA form parses and keeps its definition", "[forms][kla]") {
  Form form = kla_form();
  CHECK(form.id == "kla-desa");
  CHECK_FALSE(form.title.empty());
  CHECK(form.fields.size() >= 30);
  CHECK(form.fields.size() <= 45);
  auto again = Form::parse(form.to_json());
  REQUIRE(again);
  CHECK(again->same_definition(form));
  for (const auto& f : form.fields) {
    INFO("field " << f.name);
    CHECK_FALSE(f.label.empty());  // officers see labels, not field names
    if (f.type == FieldType::text) CHECK(f.max.has_value());
  }
}

TEST_CASE("every KLA indicator is covered by an aggregated field", "[forms][kla]") {
  Form form = kla_form();
  std::map<int, int> fields_per_indicator;
  for (const auto& f : form.fields) {
    INFO("field " << f.name);
    if (!f.indicator) {
      CHECK(f.aggregate == Aggregate::none);  // reports cannot place it
      continue;
    }
    CHECK(*f.indicator >= 1);
    CHECK(*f.indicator <= kIndicatorCount);
    ++fields_per_indicator[*f.indicator];
    switch (f.aggregate) {
      case Aggregate::sum:
        CHECK((f.type == FieldType::integer || f.type == FieldType::decimal));
        break;
      case Aggregate::count_true:
      case Aggregate::share_true:
        CHECK(f.type == FieldType::boolean);
        break;
      case Aggregate::none:
        FAIL_CHECK("indicator field " << f.name << " has no aggregate");
        break;
    }
    if (f.type == FieldType::integer) {
      REQUIRE(f.min.has_value());
      CHECK(f.min->get<std::int64_t>() == 0);  // counts of villages' people and places
    }
  }
  for (int i = 1; i <= kIndicatorCount; ++i) {
    INFO("indicator " << i);
    CHECK(fields_per_indicator[i] >= 1);
  }
}

TEST_CASE("the KLA form's meta labels each indicator and cluster once", "[forms][kla]") {
  Form form = kla_form();
  REQUIRE(form.meta.contains("clusters"));
  REQUIRE(form.meta.contains("indicators"));
  std::set<std::string> clusters;
  for (const auto& c : form.meta["clusters"]) {
    REQUIRE(c.at("id").is_string());
    CHECK_FALSE(c.at("name").get<std::string>().empty());
    CHECK(clusters.insert(c["id"].get<std::string>()).second);
  }
  CHECK(clusters.size() == 6);
  std::set<int> numbers;
  for (const auto& ind : form.meta["indicators"]) {
    INFO(ind.dump());
    int no = ind.at("no").get<int>();
    CHECK(numbers.insert(no).second);
    CHECK(clusters.count(ind.at("cluster").get<std::string>()) == 1);
    CHECK_FALSE(ind.at("name").get<std::string>().empty());
  }
  CHECK(numbers.size() == kIndicatorCount);
  CHECK(*numbers.begin() == 1);
  CHECK(*numbers.rbegin() == kIndicatorCount);
  // The list's own doubt travels with it.
  CHECK(form.meta.at("cluster_uncertain") == json::array({10, 11}));
  CHECK_FALSE(form.meta.at("uncertainty").get<std::string>().empty());
}

TEST_CASE("the KLA key is the village code and the period, both required", "[forms][kla]") {
  Form form = kla_form();
  REQUIRE(form.key == std::vector<std::string>{"desa_code", "period"});
  for (const auto& name : form.key) {
    INFO("key field " << name);
    const FieldDef* f = form.field(name);
    REQUIRE(f != nullptr);
    CHECK(f->required);
    CHECK(f->type == FieldType::text);
    CHECK_FALSE(f->indicator.has_value());
  }
  for (const auto& f : form.fields) {
    bool in_key = std::find(form.key.begin(), form.key.end(), f.name) != form.key.end();
    INFO("field " << f.name);
    CHECK(f.required == in_key);  // officers fill indicators over several visits
  }
}

TEST_CASE("a realistic KLA record validates, whole and in parts", "[forms][kla]") {
  Form form = kla_form();
  json record = realistic_record();
  CHECK(record.size() == form.fields.size());  // the example fills every field
  CHECK(refused_field(form, record, true) == "");

  SECTION("a first visit with the key and a few indicators") {
    json first = {{"desa_code", "14.03.13.1001"}, {"period", "2026"}, {"children_total", 2311},
                  {"has_forum_anak", false}};
    CHECK(refused_field(form, first, true) == "");
  }
  SECTION("a later visit changes one count and clears an optional answer") {
    json later = {{"children_with_birth_certificate", 1201}, {"has_child_info_facility", nullptr}};
    CHECK(refused_field(form, later, false) == "");
  }
}

TEST_CASE("random in-range KLA records validate", "[forms][kla]") {
  Form form = kla_form();
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    std::mt19937_64 rng(seed);
    json fields = json::object();
    for (const auto& f : form.fields)
      if (f.required || std::bernoulli_distribution(0.7)(rng)) fields[f.name] = plausible_value(f, rng);
    INFO("seed " << seed << ": " << fields.dump());
    CHECK(refused_field(form, fields, true) == "");
  }
}

TEST_CASE("typical KLA mistakes are refused naming the field", "[forms][kla]") {
  Form form = kla_form();
  struct Mistake {
    const char* what;
    const char* field;
    json value;
  };
  const Mistake mistakes[] = {
      {"a kecamatan code instead of a village code", "desa_code", "14.03.02"},
      {"a village code with a digit too many", "desa_code", "14.03.02.20011"},
      {"a two-digit year", "period", "26"},
      {"a year as a number", "period", 2026},
      {"a negative count", "children_total", -1},
      {"a count typed as text", "births", "61"},
      {"a fraction of a child", "children_with_disabilities", 2.5},
      {"a count with a stray zero too many", "active_posyandu", 30000},
      {"ya instead of yes", "has_forum_anak", "ya"},
      {"1 instead of yes", "has_patbm", 1},
      {"a note that is far too long", "kla_regulation_ref", std::string(201, 'x')},
  };
  for (const auto& m : mistakes) {
    INFO(m.what);
    json record = realistic_record();
    record[m.field] = m.value;
    CHECK(refused_field(form, record, true) == m.field);
    CHECK(refused_field(form, json{{m.field, m.value}}, false) == m.field);
  }

  SECTION("a record created without its village code") {
    json record = realistic_record();
    record.erase("desa_code");
    CHECK(refused_field(form, record, true) == "desa_code");
  }
  SECTION("clearing the period of an existing record") {
    CHECK(refused_field(form, json{{"period", nullptr}}, false) == "period");
  }
  SECTION("a field the form does not have") {
    json record = realistic_record();
    record["jumlah_anak"] = 12;
    CHECK(refused_field(form, record, true) == "jumlah_anak");
  }
}

TEST_CASE("every count and yes/no field refuses values of the wrong kind", "[forms][kla]") {
  Form form = kla_form();
  for (const auto& f : form.fields) {
    INFO("field " << f.name);
    auto refused = [&](const json& v) { return refused_field(form, json{{f.name, v}}, false); };
    if (f.type == FieldType::integer) {
      CHECK(refused(-1) == f.name);
      CHECK(refused(1.5) == f.name);
      CHECK(refused("7") == f.name);
      REQUIRE(f.max.has_value());
      CHECK(refused(f.max->get<std::int64_t>() + 1) == f.name);
      CHECK(refused(*f.max) == "");
      CHECK(refused(0) == "");
    } else if (f.type == FieldType::boolean) {
      CHECK(refused("tidak") == f.name);
      CHECK(refused(0) == f.name);
      CHECK(refused(true) == "");
    } else if (f.type == FieldType::text) {
      CHECK(refused(12) == f.name);
      CHECK(refused(std::string(static_cast<std::size_t>(f.max->get<std::int64_t>()) + 1, 'a')) == f.name);
    }
  }
}

TEST_CASE("the demo villages' codes are valid KLA village codes", "[forms][kla]") {
  Form form = kla_form();
  json regions = json::parse(read_source_file("forms/bengkalis-regions.json"), nullptr, false);
  REQUIRE_FALSE(regions.is_discarded());
  CHECK(regions.at("about").get<std::string>().find("ILLUSTRATIVE") != std::string::npos);
  const std::string regency = regions.at("regency").at("code");
  REQUIRE(regions.at("kecamatan").size() == 11);
  std::set<std::string> codes;
  for (const auto& kec : regions["kecamatan"]) {
    const std::string kcode = kec.at("code");
    INFO("kecamatan " << kcode);
    CHECK(kcode.rfind(regency + ".", 0) == 0);
    CHECK_FALSE(kec.at("villages").empty());
    for (const auto& v : kec["villages"]) {
      const std::string code = v.at("code");
      INFO("village " << code);
      CHECK(code.rfind(kcode + ".", 0) == 0);
      CHECK(codes.insert(code).second);
      CHECK(v.at("illustrative_code") == true);
      const std::string kind = v.at("kind");
      CHECK(code.substr(kcode.size() + 1, 1) == (kind == "desa" ? "2" : "1"));
      CHECK(refused_field(form, json{{"desa_code", code}}, false) == "");
    }
  }
}
