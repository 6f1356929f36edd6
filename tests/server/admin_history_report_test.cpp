// Issue #4 on the server: record history, bulk resolution, the KLA report, CSV
// export and the clock-skew flag, through Router::handle_request.
#include <catch2/catch.hpp>

#include <set>

#include "csv.hpp"
#include "form_catalog.hpp"
#include "server_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::server;
using namespace fieldsync::server::test;

namespace {

// A small form with KLA-style indicator metadata.
json indicator_form() {
  return json::parse(R"({"id": "kla-test", "title": "Indicators", "key": ["code", "period"],
    "meta": {"indicators": [{"no": 1, "name": "Counted", "cluster": "K0"},
                            {"no": 2, "name": "Yes or no", "cluster": "K1"},
                            {"no": 3, "name": "Nobody fills this"}]},
    "fields": [
      {"name": "code", "type": "text", "required": true},
      {"name": "period", "type": "text", "required": true},
      {"name": "count", "type": "integer", "min": 0, "indicator": 1, "aggregate": "sum"},
      {"name": "flag", "type": "boolean", "indicator": 2, "aggregate": "share_true"},
      {"name": "also", "type": "boolean", "indicator": 2, "aggregate": "count_true"},
      {"name": "note", "type": "text"},
      {"name": "tags", "type": "select_multiple", "choices": ["a", "b", "c"]}]})");
}

struct Fixture : ServerFixture {
  std::string one, two, other, admin;
  explicit Fixture(RouterOptions options = {}) : ServerFixture(std::move(options)) {
    REQUIRE(publish_form(*writer, indicator_form(), "", "test", kStartMs).ok());
    add_user("officer.one", "officer", {"14.03.02"});
    add_user("officer.two", "officer", {"14.03.02"});
    add_user("officer.other", "officer", {"14.03.01"});
    add_user("admin", "admin", {});
    one = login("officer.one", "secret-password", "dev-1");
    two = login("officer.two", "secret-password", "dev-2");
    other = login("officer.other", "secret-password", "dev-3");
    admin = login("admin", "secret-password", "dev-admin");
  }
  Response raw_get(const std::string& target, const std::string& token) {
    return call("GET", target, {}, token);
  }
  json get(const std::string& target, const std::string& token, int status = 200) {
    auto r = call("GET", target, {}, token);
    INFO(target << " -> " << r.body);
    REQUIRE(r.status == status);
    return json::parse(r.body);
  }
  json post(const std::string& target, const json& body, const std::string& token,
            int status = 200) {
    auto r = call("POST", target, body.dump(), token);
    INFO(target << " -> " << r.body);
    REQUIRE(r.status == status);
    return json::parse(r.body);
  }
  // A change of the kla-test form.
  static json kc(const std::string& id, const std::string& record, json fields,
                 json base = json::object(), const std::string& scope = "14.03.02.2001",
                 const std::string& op = "upsert") {
    json c = change(id, record, std::move(fields), std::move(base), scope, op);
    c["form"] = "kla-test";
    return c;
  }
  std::int64_t seq_of(const json& answer) { return answer["results"][0]["seq"]; }
  // officer.one creates `record` with count 1; officer.two then offers `count`
  // on the same base as officer.one's later edit: a field conflict. Returns its id.
  std::int64_t field_conflict(int n, int one_value, int two_value) {
    const std::string r = record_id(n);
    const std::string p = std::to_string(n);
    auto v0 =
        seq_of(sync(one, "dev-1",
                    json::array({kc("dev-1:" + p + "0", r,
                                    {{"code", "c" + p}, {"period", "2026"}, {"count", 1}})})));
    sync(one, "dev-1",
         json::array({kc("dev-1:" + p + "1", r, {{"count", one_value}}, {{"count", v0}})}));
    advance(std::chrono::seconds(1));
    auto res =
        sync(two, "dev-2",
             json::array({kc("dev-2:" + p + "1", r, {{"count", two_value}}, {{"count", v0}})}));
    REQUIRE(res["results"][0]["status"] == "conflict");
    return res["results"][0]["conflicts"][0]["id"];
  }
};

}  // namespace

TEST_CASE("history lists every entry, candidate, resolution and rejection of a record",
          "[server][admin][history]") {
  Fixture f;
  const auto id = f.field_conflict(1, 10, 20);
  // A rejected change of the record, and an entry of another record.
  f.sync(f.one, "dev-1", json::array({Fixture::kc("dev-1:12", record_id(1), {{"count", -1}})}));
  f.sync(f.one, "dev-1",
         json::array({Fixture::kc("dev-1:13", record_id(2), {{"code", "x"}, {"period", "2026"}})}));
  f.post("/v1/conflicts/" + std::to_string(id) + "/resolve", {{"value", 15}, {"note", "called"}},
         f.admin);

  auto h = f.get("/v1/records/" + record_id(1) + "/history", f.admin);
  CHECK(h["record"] == record_id(1));
  const json& entries = h["entries"];
  REQUIRE(entries.size() == 4);
  std::vector<std::string> origins;
  std::int64_t last_seq = 0;
  for (const auto& e : entries) {
    CHECK(e["record"] == record_id(1));
    CHECK(e["seq"].get<std::int64_t>() > last_seq);  // oldest first
    last_seq = e["seq"];
    origins.push_back(e["origin"].get<std::string>());
  }
  CHECK(origins == std::vector<std::string>{"dev-1:10", "dev-1:11", "dev-2:11",
                                            "admin:admin:" + std::to_string(id)});
  // The losing offer is kept with the entry of its change.
  REQUIRE(entries[2]["candidates"].size() == 1);
  CHECK(entries[2]["candidates"][0]["value"] == 20);
  CHECK(entries[2]["candidates"][0]["conflict"] == id);
  CHECK(entries[2]["author"] == "officer.two");
  CHECK(entries[3]["fields"] == json{{"count", 15}});
  REQUIRE(h["conflicts"].size() == 1);
  CHECK(h["conflicts"][0]["status"] == "resolved");
  CHECK(h["conflicts"][0]["resolution"]["note"] == "called");
  REQUIRE(h["rejected"].size() == 1);
  CHECK(h["rejected"][0]["change_id"] == "dev-1:12");
  CHECK(h["rejected"][0]["error"]["code"] == "validation");

  // Officers read the history of records within their scopes only.
  CHECK(f.get("/v1/records/" + record_id(1) + "/history", f.two)["entries"].size() == 4);
  f.get("/v1/records/" + record_id(1) + "/history", f.other, 404);
  f.get("/v1/records/" + record_id(99) + "/history", f.admin, 404);
  CHECK(f.call("POST", "/v1/records/" + record_id(1) + "/history", "{}", f.admin).status == 405);
}

TEST_CASE("bulk resolution: a dry run changes nothing, then each rule resolves",
          "[server][admin][bulk]") {
  Fixture f;
  const auto c1 = f.field_conflict(1, 10, 20);
  const auto c2 = f.field_conflict(2, 30, 40);
  // A duplicate record: the rules other than `server` do not apply to it.
  auto dup = f.sync(
      f.two, "dev-2",
      json::array({Fixture::kc("dev-2:90", record_id(3), {{"code", "c1"}, {"period", "2026"}})}));
  const auto c3 = dup["results"][0]["conflicts"][0]["id"].get<std::int64_t>();
  const auto head = f.stats().head_seq;

  SECTION("officers may not") {
    CHECK(f.call("POST", "/v1/conflicts/resolve-bulk", R"({"rule": "server"})", f.one).status ==
          403);
  }
  SECTION("malformed requests are 400 validation") {
    CHECK(f.post("/v1/conflicts/resolve-bulk", {{"rule", "coin"}}, f.admin,
                 400)["error"]["field"] == "rule");
    CHECK(f.post("/v1/conflicts/resolve-bulk", {{"rule", "candidate_from_user"}}, f.admin,
                 400)["error"]["field"] == "user");
    CHECK(f.post("/v1/conflicts/resolve-bulk", {{"rule", "server"}, {"filter", {{"kind", "x"}}}},
                 f.admin, 400)["error"]["field"] == "filter.kind");
    CHECK(f.stats().head_seq == head);
  }
  SECTION("latest_received: dry run, then for real") {
    json body = {
        {"rule", "latest_received"}, {"dry_run", true}, {"filter", {{"form", "kla-test"}}}};
    auto dry = f.post("/v1/conflicts/resolve-bulk", body, f.admin);
    CHECK(dry["matched"] == 3);
    CHECK(dry["skipped"] == 1);
    CHECK(dry["would_resolve"] == 2);
    CHECK(f.stats().head_seq == head);
    CHECK(f.get("/v1/conflicts?status=open", f.admin)["conflicts"].size() == 3);
    std::map<std::int64_t, json> by_id;
    for (const auto& r : dry["results"]) by_id[r["id"].get<std::int64_t>()] = r;
    CHECK(by_id[c1]["action"] == json{{"keep", "candidate"}, {"candidate", 0}});
    CHECK(by_id[c3]["status"] == "skipped");

    body["dry_run"] = false;
    body["note"] = "latest wins";
    auto done = f.post("/v1/conflicts/resolve-bulk", body, f.admin);
    INFO(done.dump());
    CHECK(done["resolved"] == 2);
    CHECK(f.store->record(record_id(1)).value()->row.fields.at("count").value == 20);
    CHECK(f.store->record(record_id(2)).value()->row.fields.at("count").value == 40);
    auto c = f.get("/v1/conflicts/" + std::to_string(c2), f.admin);
    CHECK(c["status"] == "resolved");
    CHECK(c["resolution"]["note"] == "latest wins");
    CHECK(f.get("/v1/conflicts/" + std::to_string(c3), f.admin)["status"] == "open");
  }
  SECTION("candidate_from_user and server, filtered by field and kind") {
    auto r = f.post("/v1/conflicts/resolve-bulk",
                    {{"rule", "candidate_from_user"},
                     {"user", "officer.nobody"},
                     {"filter", {{"field", "count"}}}},
                    f.admin);
    CHECK(r["matched"] == 2);
    CHECK(r["skipped"] == 2);
    CHECK(f.stats().head_seq == head);
    r = f.post("/v1/conflicts/resolve-bulk",
               {{"rule", "server"}, {"filter", {{"kind", "field"}, {"scope", "14.03.02"}}}},
               f.admin);
    CHECK(r["resolved"] == 2);
    CHECK(f.store->record(record_id(1)).value()->row.fields.at("count").value == 10);
    r = f.post("/v1/conflicts/resolve-bulk",
               {{"rule", "server"}, {"filter", {{"kind", "duplicate_record"}}}}, f.admin);
    CHECK(r["resolved"] == 1);
    CHECK(f.get("/v1/conflicts?status=open", f.admin)["conflicts"].empty());
    // Nothing left to match: a second run resolves nothing.
    CHECK(f.post("/v1/conflicts/resolve-bulk", {{"rule", "server"}}, f.admin)["matched"] == 0);
  }
}

TEST_CASE("the KLA report aggregates per kecamatan and regency, within the caller's scopes",
          "[server][admin][report]") {
  Fixture f;
  f.sync(
      f.one, "dev-1",
      json::array(
          {Fixture::kc(
               "dev-1:1", record_id(1),
               {{"code", "a"}, {"period", "2026"}, {"count", 5}, {"flag", true}, {"also", true}},
               {}, "14.03.02.2001"),
           Fixture::kc("dev-1:2", record_id(2),
                       {{"code", "b"}, {"period", "2026"}, {"count", 7}, {"flag", false}}, {},
                       "14.03.02.2002"),
           Fixture::kc("dev-1:3", record_id(4), {{"code", "d"}, {"period", "2026"}, {"count", 100}},
                       {}, "14.03.02.2003")}));
  f.sync(
      f.other, "dev-3",
      json::array({Fixture::kc("dev-3:1", record_id(3),
                               {{"code", "c"}, {"period", "2026"}, {"count", 11}, {"also", true}},
                               {}, "14.03.01.2001")}));
  // A deleted village does not count; an open conflict on `count` does.
  auto v4 = f.store->record(record_id(4)).value()->row.version;
  f.sync(f.one, "dev-1",
         json::array(
             {Fixture::kc("dev-1:4", record_id(4), {}, {{"", v4}}, "14.03.02.2003", "delete")}));
  auto v1 = f.store->record(record_id(1)).value()->row.fields.at("count").version;
  f.sync(f.one, "dev-1",
         json::array({Fixture::kc("dev-1:5", record_id(1), {{"count", 6}}, {{"count", v1}})}));
  f.sync(f.two, "dev-2",
         json::array({Fixture::kc("dev-2:1", record_id(1), {{"count", 9}}, {{"count", v1}})}));

  auto area = [](const json& report, const std::string& code) {
    for (const auto& a : report["areas"])
      if (a["code"] == code) return a;
    return json();
  };
  auto indicator = [](const json& a, int no) {
    for (const auto& i : a["indicators"])
      if (i["no"] == no) return i;
    return json();
  };
  auto rep = f.get("/v1/reports/kla?form=kla-test", f.admin);
  CHECK(rep["areas"].size() == 3);
  const json regency = area(rep, "14.03");
  REQUIRE(regency.is_object());
  CHECK(regency["level"] == "regency");
  CHECK(regency["villages"] == 3);
  CHECK(indicator(regency, 1)["fields"][0]["value"] == 6 + 7 + 11);
  CHECK(indicator(regency, 1)["villages_with_value"] == 3);
  CHECK(indicator(regency, 1)["open_conflicts"] == 1);
  CHECK(indicator(regency, 1)["name"] == "Counted");
  const json i2 = indicator(regency, 2);
  CHECK(i2["villages_with_value"] == 3);
  CHECK(i2["fields"][0]["name"] == "flag");
  CHECK(i2["fields"][0]["value"].get<double>() ==
        Approx(0.5));                    // share of yes among 2 villages with a value
  CHECK(i2["fields"][1]["value"] == 2);  // count of yes
  CHECK(indicator(regency, 3)["villages_with_value"] == 0);
  const json bantan = area(rep, "14.03.02");
  CHECK(bantan["level"] == "kecamatan");
  CHECK(bantan["villages"] == 2);
  CHECK(indicator(bantan, 1)["fields"][0]["value"] == 13);
  CHECK(indicator(area(rep, "14.03.01"), 1)["open_conflicts"] == 0);

  SECTION("officers see only their scopes") {
    auto mine = f.get("/v1/reports/kla?form=kla-test", f.one);
    CHECK(area(mine, "14.03.01").is_null());
    CHECK(area(mine, "14.03")["villages"] == 2);
    CHECK(f.get("/v1/reports/kla?form=kla-test&scope=14.03.02", f.one)["areas"].size() == 2);
    f.get("/v1/reports/kla?form=kla-test&scope=14.03.01", f.one, 403);
    f.get("/v1/reports/kla?form=kla-test&scope=14.03", f.one, 403);
    f.get("/v1/reports/kla?form=kla-test&scope=14.x", f.one, 400);
  }
  SECTION("CSV gives the same numbers") {
    auto r = f.raw_get("/v1/reports/kla?form=kla-test&format=csv", f.admin);
    REQUIRE(r.status == 200);
    CHECK(r.header("Content-Type").rfind("text/csv", 0) == 0);
    auto rows = parse_csv(r.body);
    REQUIRE(rows.ok());
    REQUIRE(rows->size() > 1);
    const auto& head = (*rows)[0];
    CHECK(head[0] == "level");
    bool seen = false;
    for (const auto& row : *rows) {
      REQUIRE(row.size() == head.size());
      if (row[1] == "14.03" && row[5] == "count") {
        CHECK(row[9] == "24");
        CHECK(row[8] == "1");
        seen = true;
      }
    }
    CHECK(seen);
  }
}

TEST_CASE("CSV export round-trips commas, quotes, newlines and non-ASCII text",
          "[server][admin][export]") {
  Fixture f;
  const std::string tricky = "Désa \"Ngô\", baris 1\r\nbaris 2\n— ✓ 子供";
  f.sync(f.one, "dev-1",
         json::array({Fixture::kc("dev-1:1", record_id(1),
                                  {{"code", "a,b"},
                                   {"period", "2026"},
                                   {"note", tricky},
                                   {"tags", json::array({"a", "c"})},
                                   {"flag", false}}),
                      Fixture::kc("dev-1:2", record_id(2), {{"code", "\"q\""}, {"period", "2026"}},
                                  {}, "14.03.02.2002")}));
  f.sync(f.other, "dev-3",
         json::array({Fixture::kc("dev-3:1", record_id(3), {{"code", "z"}, {"period", "2026"}}, {},
                                  "14.03.01.2001")}));

  auto r = f.raw_get("/v1/export?form=kla-test&format=csv", f.admin);
  REQUIRE(r.status == 200);
  CHECK(r.body.rfind("_id,", 0) == 0);  // no BOM
  auto rows = parse_csv(r.body);
  REQUIRE(rows.ok());
  REQUIRE(rows->size() == 4);
  CHECK((*rows)[0] == std::vector<std::string>{"_id", "_scope", "_form_version", "_version", "code",
                                               "period", "count", "flag", "also", "note", "tags"});
  const auto& one = (*rows)[1];
  CHECK(one[0] == record_id(1));
  CHECK(one[4] == "a,b");
  CHECK(one[6] == "");
  CHECK(one[7] == "false");
  CHECK(one[9] == tricky);
  CHECK(one[10] == "a c");
  CHECK((*rows)[2][4] == "\"q\"");

  // Officers export within their scopes only.
  auto mine = parse_csv(f.raw_get("/v1/export?form=kla-test", f.one).body);
  REQUIRE(mine.ok());
  CHECK(mine->size() == 3);
  CHECK(f.raw_get("/v1/export?form=kla-test&scope=14.03.01", f.one).status == 403);
  CHECK(f.raw_get("/v1/export?form=nope", f.admin).status == 404);
  CHECK(f.raw_get("/v1/export", f.admin).status == 400);
  CHECK(f.raw_get("/v1/export?form=kla-test&format=xlsx", f.admin).status == 400);
}

TEST_CASE("csv_row and parse_csv are inverse over random text", "[server][csv][property]") {
  const std::string alphabet[] = {"a", ",", "\"", "\r\n", "\n", " ", "é", "✓", "x", "\r"};
  for (std::uint32_t seed = 1; seed <= 200; ++seed) {
    std::mt19937 rng(seed);
    std::vector<std::vector<std::string>> rows(1 + rng() % 4);
    std::string text;
    for (auto& row : rows) {
      row.resize(1 + rng() % 4);
      for (auto& field : row)
        for (std::uint32_t i = rng() % 6; i > 0; --i) field += alphabet[rng() % 10];
      if (row.size() == 1 && row[0].empty()) row[0] = "e";  // an empty line is no row
      text += csv_row(row);
    }
    auto back = parse_csv(text);
    INFO("seed " << seed);
    REQUIRE(back.ok());
    CHECK(*back == rows);
  }
}

TEST_CASE("devices are flagged when their clock is off beyond the threshold",
          "[server][admin][devices]") {
  auto flags_for = [](std::int64_t skew_ms, RouterOptions options) {
    Fixture f(std::move(options));
    json c = Fixture::kc("dev-1:1", record_id(1), {{"code", "a"}, {"period", "2026"}});
    c["hlc"] = hlc_at(f.clock->load() + skew_ms);
    f.sync(f.one, "dev-1", json::array({c}));
    auto d = f.get("/v1/devices", f.admin);
    REQUIRE(d["devices"].size() == 1);
    CHECK(d["devices"][0]["clock_offset_ms"] == skew_ms);
    return d["devices"][0]["flags"];
  };
  const std::int64_t minute = 60'000;
  CHECK(flags_for(6 * minute, {}).empty());  // default threshold: 10 minutes
  CHECK(flags_for(11 * minute, {}) == json::array({"clock_skew"}));
  // Negative offsets are mostly officers syncing late, not clocks: never flagged.
  CHECK(flags_for(-11 * minute, {}).empty());
  RouterOptions strict;
  strict.clock_skew_ms = 5 * minute;
  CHECK(flags_for(6 * minute, strict) == json::array({"clock_skew"}));
}
