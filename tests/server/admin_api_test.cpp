// The admin API: conflicts (list, show, resolve), the quarantine and devices.
#include <catch2/catch.hpp>

#include "server_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::server;
using namespace fieldsync::server::test;

namespace {

struct AdminFixture : ServerFixture {
  std::string a, b, admin, officer_c;
  AdminFixture() {
    add_user("officer.bantan", "officer", {"14.03.02"});
    add_user("officer.bengkalis", "officer", {"14.03.01"});
    add_user("admin", "admin", {});
    a = login("officer.bantan", "secret-password", "dev-a");
    b = login("officer.bantan", "secret-password", "dev-b");
    officer_c = login("officer.bengkalis", "secret-password", "dev-c");
    admin = login("admin", "secret-password", "dev-admin");
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
  // A field conflict on `count` of record 1: a sets 10, b offers 20. Returns its id.
  std::int64_t field_conflict() {
    auto v0 = sync(a, "dev-a",
                   json::array({change(
                       "dev-a:1", record_id(1),
                       {{"code", "k"}, {"period", "1"}, {"count", 1}})}))["results"][0]["seq"]
                  .get<std::int64_t>();
    sync(a, "dev-a",
         json::array({change("dev-a:2", record_id(1), {{"count", 10}}, {{"count", v0}})}));
    auto r = sync(b, "dev-b",
                  json::array({change("dev-b:1", record_id(1), {{"count", 20}}, {{"count", v0}})}));
    return r["results"][0]["conflicts"][0]["id"];
  }
};

}  // namespace

TEST_CASE("officers cannot use the admin API", "[server][admin]") {
  AdminFixture f;
  CHECK(f.call("GET", "/v1/conflicts", {}, f.a).status == 403);
  CHECK(f.call("GET", "/v1/conflicts/1", {}, f.a).status == 403);
  CHECK(f.call("POST", "/v1/conflicts/1/resolve", R"({"keep": "server"})", f.a).status == 403);
  CHECK(f.call("GET", "/v1/quarantine", {}, f.a).status == 403);
  CHECK(f.call("GET", "/v1/devices", {}, f.a).status == 403);
  CHECK(f.call("GET", "/v1/conflicts").status == 401);
}

TEST_CASE("a field conflict is listed with the live server value and its candidates",
          "[server][admin]") {
  AdminFixture f;
  const auto id = f.field_conflict();
  auto list = f.get("/v1/conflicts?status=open", f.admin);
  REQUIRE(list["conflicts"].size() == 1);
  CHECK(list["more"] == false);
  const json& c = list["conflicts"][0];
  CHECK(c["id"] == id);
  CHECK(c["kind"] == "field");
  CHECK(c["record"] == record_id(1));
  CHECK(c["field"] == "count");
  CHECK(c["status"] == "open");
  CHECK(c["scope"] == "14.03.02.2001");
  CHECK(c["server"]["value"] == 10);
  CHECK(c["server"]["author"] == "officer.bantan");
  CHECK(c["server"]["device"] == "dev-a");
  REQUIRE(c["candidates"].size() == 1);
  CHECK(c["candidates"][0]["value"] == 20);
  CHECK(c["candidates"][0]["change"] == "dev-b:1");
  CHECK(f.get("/v1/conflicts/" + std::to_string(id), f.admin) == c);
  CHECK(f.get("/v1/conflicts?status=resolved", f.admin)["conflicts"].empty());
  CHECK(f.get("/v1/conflicts?kind=delete", f.admin)["conflicts"].empty());
  CHECK(f.get("/v1/conflicts?record=" + record_id(1), f.admin)["conflicts"].size() == 1);
  CHECK(f.get("/v1/conflicts?scope=14.03.01", f.admin)["conflicts"].empty());
  CHECK(f.get("/v1/conflicts?after=" + std::to_string(id), f.admin)["conflicts"].empty());
  f.get("/v1/conflicts/999", f.admin, 404);
  f.get("/v1/conflicts?status=maybe", f.admin, 400);
}

TEST_CASE("resolving a field conflict is a new change every device pulls",
          "[server][admin][resolve]") {
  AdminFixture f;
  const auto id = f.field_conflict();
  const std::string path = "/v1/conflicts/" + std::to_string(id) + "/resolve";
  const auto head = f.stats().head_seq;

  SECTION("keep a candidate, with a note") {
    auto r = f.post(path, {{"keep", "candidate"}, {"candidate", 0}, {"note", "checked"}}, f.admin);
    CHECK(r["seqs"] == json::array({head + 1}));
    CHECK(r["seq"] == head + 1);
    auto rec = f.store->record(record_id(1)).value();
    CHECK(rec->row.fields.at("count").value == 20);
    CHECK(rec->row.fields.at("count").version == head + 1);
    auto e = f.log().back();
    CHECK(e.origin == "admin:admin:" + std::to_string(id));
    CHECK(e.author == "admin");
    CHECK(e.fields == json{{"count", 20}});
    REQUIRE(e.conflicts.size() == 1);
    CHECK(e.conflicts[0].status == "resolved");
    auto c = f.get("/v1/conflicts/" + std::to_string(id), f.admin);
    CHECK(c["status"] == "resolved");
    CHECK(c["resolution"]["by"] == "admin");
    CHECK(c["resolution"]["note"] == "checked");
    // The officer's device pulls the resolution.
    auto pulled = f.sync(f.b, "dev-b", json::array(), head);
    REQUIRE(pulled["changes"].size() == 1);
    CHECK(pulled["changes"][0]["conflicts"][0]["status"] == "resolved");
    f.post(path, {{"keep", "server"}}, f.admin, 409);
  }
  SECTION("keep the server value or set another") {
    f.post(path, {{"value", 33}}, f.admin);
    CHECK(f.store->record(record_id(1)).value()->row.fields.at("count").value == 33);
  }
  SECTION("invalid resolutions are 400 validation and change nothing") {
    CHECK(f.post(path, {{"value", -5}}, f.admin, 400)["error"]["field"] == "value");
    CHECK(f.post(path, {{"keep", "candidate"}, {"candidate", 3}}, f.admin, 400)["error"]["field"] ==
          "candidate");
    CHECK(f.post(path, {{"keep", "whatever"}}, f.admin, 400)["error"]["code"] == "validation");
    CHECK(f.stats().head_seq == head);
    CHECK(f.get("/v1/conflicts/" + std::to_string(id), f.admin)["status"] == "open");
  }
  SECTION("a field conflict on a since-deleted record is 409 deleted") {
    const auto v = f.store->record(record_id(1)).value()->row.version;
    f.sync(
        f.a, "dev-a",
        json::array({change("dev-a:9", record_id(1), {}, {{"", v}}, "14.03.02.2001", "delete")}));
    CHECK(f.post(path, {{"keep", "server"}}, f.admin, 409)["error"]["code"] == "deleted");
  }
}

TEST_CASE("resolving delete conflicts: keep deleted, or keep the record with a candidate",
          "[server][admin][resolve]") {
  AdminFixture f;
  auto v0 = f.sync(f.a, "dev-a",
                   json::array({change(
                       "dev-a:1", record_id(1),
                       {{"code", "k"}, {"period", "1"}, {"count", 1}})}))["results"][0]["seq"]
                .get<std::int64_t>();
  // b deletes; a edits without having seen it: a delete conflict with a's fields.
  f.sync(f.b, "dev-b",
         json::array({change("dev-b:1", record_id(1), {}, {{"", v0}}, "14.03.02.2001", "delete")}));
  auto r = f.sync(f.a, "dev-a",
                  json::array({change("dev-a:2", record_id(1), {{"count", 5}}, {{"count", v0}})}));
  const auto id = r["results"][0]["conflicts"][0]["id"].get<std::int64_t>();
  const std::string path = "/v1/conflicts/" + std::to_string(id) + "/resolve";
  auto shown = f.get("/v1/conflicts/" + std::to_string(id), f.admin);
  CHECK(shown["kind"] == "delete");
  CHECK(shown["server"]["value"].is_null());  // the record is deleted
  CHECK(shown["candidates"][0]["value"] == json{{"count", 5}});

  SECTION("keep the record with the candidate's fields: a revive") {
    f.post(path, {{"keep", "record"}, {"candidate", 0}}, f.admin);
    auto rec = f.store->record(record_id(1)).value();
    CHECK(!rec->row.deleted);
    CHECK(rec->row.fields.at("count").value == 5);
    CHECK(rec->row.fields.at("code").value == "k");
    auto e = f.log().back();
    CHECK(e.op == "revive");
    CHECK(e.fields == json{{"code", "k"}, {"count", 5}, {"period", "1"}});
  }
  SECTION("keep it deleted") {
    f.post(path, {{"keep", "deleted"}}, f.admin);
    CHECK(f.store->record(record_id(1)).value()->row.deleted);
    CHECK(f.log().back().op == "delete");
  }
}

TEST_CASE("resolving duplicates: keep both, or merge into one", "[server][admin][resolve]") {
  AdminFixture f;
  f.sync(f.a, "dev-a",
         json::array(
             {change("dev-a:1", record_id(1), {{"code", "k"}, {"period", "1"}, {"count", 1}})}));
  auto r = f.sync(f.b, "dev-b",
                  json::array({change("dev-b:1", record_id(2),
                                      {{"code", "k"}, {"period", "1"}, {"note", "from b"}})}));
  const auto id = r["results"][0]["conflicts"][0]["id"].get<std::int64_t>();
  const std::string path = "/v1/conflicts/" + std::to_string(id) + "/resolve";
  CHECK(f.get("/v1/conflicts?kind=duplicate_record", f.admin)["conflicts"][0]["records"] ==
        json::array({record_id(1), record_id(2)}));

  SECTION("merge into the first: it takes the empty fields, the other is deleted") {
    auto res = f.post(path, {{"merge_into", record_id(1)}}, f.admin);
    CHECK(res["seqs"].size() == 2);
    auto one = f.store->record(record_id(1)).value();
    CHECK(one->row.fields.at("note").value == "from b");
    CHECK(one->row.fields.at("count").value == 1);
    CHECK(f.store->record(record_id(2)).value()->row.deleted);
    CHECK(f.post(path, {{"merge_into", record_id(9)}}, f.admin, 409)["error"]["code"] ==
          "already_resolved");
  }
  SECTION("keep both: one entry per record, nothing changed") {
    auto res = f.post(path, {{"keep", "both"}}, f.admin);
    CHECK(res["seqs"].size() == 2);
    CHECK(!f.store->record(record_id(1)).value()->row.deleted);
    CHECK(!f.store->record(record_id(2)).value()->row.deleted);
  }
  SECTION("merge into a record the conflict does not link") {
    CHECK(f.post(path, {{"merge_into", record_id(7)}}, f.admin, 400)["error"]["field"] ==
          "merge_into");
  }
}

TEST_CASE("the quarantine and the devices are listed for admins", "[server][admin]") {
  AdminFixture f;
  f.advance(std::chrono::seconds(2));
  f.sync(f.a, "dev-a",
         json::array({change("dev-a:1", record_id(1), {{"code", "k"}}),
                      change("dev-a:2", record_id(2), {{"code", "k"}, {"period", "1"}})}));
  f.sync(f.officer_c, "dev-c",
         json::array({change("dev-c:1", record_id(3), {{"code", "k"}, {"period", "1"}}, {},
                             "14.03.02.2001")}));
  auto q = f.get("/v1/quarantine", f.admin);
  REQUIRE(q["rejected"].size() == 2);
  CHECK(q["rejected"][0]["change_id"] == "dev-a:1");
  CHECK(q["rejected"][0]["error"]["code"] == "validation");
  CHECK(q["rejected"][0]["change"]["record"] == record_id(1));
  CHECK(q["rejected"][1]["error"]["code"] == "forbidden");
  CHECK(f.get("/v1/quarantine?device=dev-c", f.admin)["rejected"].size() == 1);
  CHECK(f.get("/v1/quarantine?user=officer.bantan", f.admin)["rejected"].size() == 1);
  auto page = f.get("/v1/quarantine?limit=1", f.admin);
  CHECK(page["rejected"].size() == 1);
  CHECK(page["more"] == true);

  auto d = f.get("/v1/devices", f.admin);
  REQUIRE(d["devices"].size() == 2);
  const json& a = d["devices"][0];
  CHECK(a["device_id"] == "dev-a");
  CHECK(a["user"] == "officer.bantan");
  CHECK(a["changes_received"] == 2);
  CHECK(a["last_error"].get<std::string>().rfind("validation", 0) == 0);
  CHECK(a["clock_offset_ms"] == -2000);  // the changes were stamped 2 s before they arrived
  CHECK(a["flags"].empty());
  CHECK(a["protocol_version"] == 1);
}
