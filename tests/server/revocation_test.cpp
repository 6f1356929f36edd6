// Revocation over the API (protocol.md "Revocation"): an admin revokes a user or
// a device, every token of it ends at once, and what the revoked party may do
// afterwards. In-process (router called directly, test clock).
#include <sqlite3.h>

#include "server_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::server;
using namespace fieldsync::server::test;

namespace {

json body_of(const Response& r) {
  json j = json::parse(r.body, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

std::string error_code(const Response& r) {
  json j = json::parse(r.body, nullptr, false);
  if (!j.is_object() || !j.contains("error")) return {};
  return j["error"].value("code", "");
}

std::string login_body(const std::string& user, const std::string& device,
                       const std::string& password = "secret-password") {
  json b = {{"username", user}, {"password", password}};
  if (!device.empty()) b["device_id"] = device;
  return b.dump();
}

struct Cast {
  ServerFixture f;
  std::string admin;
  Cast() {
    f.add_user("admin", "admin", {});
    f.add_user("admin2", "admin", {});
    f.add_user("officer.bantan", "officer", {"14.03.02"});
    f.add_user("officer.bantan2", "officer", {"14.03.02"});
    admin = f.login("admin", "secret-password", "admin-laptop");
  }
  Response post(const std::string& target, const std::string& token) {
    return f.call("POST", target, {}, token);
  }
};

}  // namespace

TEST_CASE("an admin revokes a user over the API and reinstates it", "[server][revocation]") {
  Cast c;
  auto& f = c.f;
  const auto t1 = f.login("officer.bantan", "secret-password", "d1");
  const auto t2 = f.login("officer.bantan", "secret-password", "d2");
  const auto other = f.login("officer.bantan2", "secret-password", "d3");

  auto res = c.post("/v1/users/officer.bantan/revoke", c.admin);
  INFO(res.body);
  REQUIRE(res.status == 200);
  const json answer = body_of(res);
  CHECK(answer.at("user") == "officer.bantan");
  CHECK(answer.at("disabled") == true);
  CHECK(answer.at("tokens_revoked") == 2);
  // Every token of the user ended at once; the next request is 401.
  for (const auto& t : {t1, t2}) {
    auto r = f.call("GET", "/v1/forms", {}, t);
    CHECK(r.status == 401);
    CHECK(error_code(r) == "unauthorized");
  }
  CHECK(f.call("GET", "/v1/forms", {}, other).status == 200);  // another user: untouched
  // Disabled: a login with the right password is 401 like a wrong one.
  CHECK(f.call("POST", "/v1/login", login_body("officer.bantan", "d1")).status == 401);
  // Revoking again: still disabled, nothing more to end.
  auto again = c.post("/v1/users/officer.bantan/revoke", c.admin);
  REQUIRE(again.status == 200);
  CHECK(body_of(again).at("tokens_revoked") == 0);

  auto back = c.post("/v1/users/officer.bantan/reinstate", c.admin);
  INFO(back.body);
  REQUIRE(back.status == 200);
  CHECK(body_of(back).at("disabled") == false);
  CHECK(body_of(back).at("was_disabled") == true);
  // Old tokens stay ended; a new login works.
  CHECK(f.call("GET", "/v1/forms", {}, t1).status == 401);
  const auto fresh = f.login("officer.bantan", "secret-password", "d1");
  CHECK(f.call("GET", "/v1/forms", {}, fresh).status == 200);
  auto twice = c.post("/v1/users/officer.bantan/reinstate", c.admin);
  REQUIRE(twice.status == 200);
  CHECK(body_of(twice).at("was_disabled") == false);
}

TEST_CASE("user revocation refuses officers, unknown users and the caller itself",
          "[server][revocation]") {
  Cast c;
  auto& f = c.f;
  const auto officer = f.login("officer.bantan", "secret-password", "d1");
  for (const char* target : {"/v1/users/officer.bantan2/revoke", "/v1/users/admin/revoke",
                             "/v1/users/officer.bantan2/reinstate"}) {
    INFO(target);
    auto r = c.post(target, officer);
    CHECK(r.status == 403);
    CHECK(error_code(r) == "forbidden");
  }
  CHECK(f.call("GET", "/v1/forms", {}, c.admin).status == 200);  // the officer changed nothing

  for (const char* target : {"/v1/users/nobody/revoke", "/v1/users/nobody/reinstate",
                             "/v1/users/NOT%20A%20NAME/revoke"}) {
    INFO(target);
    auto r = c.post(target, c.admin);
    CHECK(r.status == 404);
    CHECK(error_code(r) == "not_found");
  }
  auto self = c.post("/v1/users/admin/revoke", c.admin);
  CHECK(self.status == 409);
  CHECK(error_code(self) == "self_revocation");
  CHECK(f.call("GET", "/v1/forms", {}, c.admin).status == 200);
  // Another admin may revoke this one.
  const auto admin2 = f.login("admin2", "secret-password", "admin2-laptop");
  CHECK(c.post("/v1/users/admin/revoke", admin2).status == 200);
  CHECK(f.call("GET", "/v1/forms", {}, c.admin).status == 401);
  // Only POST.
  auto get = f.call("GET", "/v1/users/officer.bantan/revoke", {}, admin2);
  CHECK(get.status == 405);
  CHECK(get.header("Allow") == "POST");
}

TEST_CASE("a revoked device loses its tokens and may not log in or sync until reinstated",
          "[server][revocation]") {
  Cast c;
  auto& f = c.f;
  // The phone "lost" is shared by two officers; "kept" is another phone.
  const auto lost1 = f.login("officer.bantan", "secret-password", "lost");
  const auto lost2 = f.login("officer.bantan2", "secret-password", "lost");
  const auto kept = f.login("officer.bantan", "secret-password", "kept");
  f.sync(lost1, "lost",
         json::array({change("lost:1", record_id(1), {{"code", "A"}, {"period", "2026"}})}));
  const auto head_before = f.stats().head_seq;

  auto res = c.post("/v1/devices/lost/revoke", c.admin);
  INFO(res.body);
  REQUIRE(res.status == 200);
  const json answer = body_of(res);
  CHECK(answer.at("device_id") == "lost");
  CHECK(answer.at("revoked") == true);
  CHECK(answer.at("tokens_revoked") == 2);
  CHECK(answer.at("already_revoked") == false);
  CHECK(answer.at("revoked_by") == "admin");
  CHECK(answer.at("revoked_at") == format_rfc3339_ms(f.clock->load()));

  for (const auto& t : {lost1, lost2}) CHECK(f.call("GET", "/v1/forms", {}, t).status == 401);
  CHECK(f.call("GET", "/v1/forms", {}, kept).status == 200);  // the user's other phone works

  // A login naming the device is 403 device_revoked - only with the right password.
  auto login = f.call("POST", "/v1/login", login_body("officer.bantan", "lost"));
  CHECK(login.status == 403);
  CHECK(error_code(login) == "device_revoked");
  CHECK(body_of(login)["error"].value("field", "") == "device_id");
  CHECK(f.call("POST", "/v1/login", login_body("officer.bantan", "lost", "wrong")).status == 401);
  // Refused logins of a revoked device are not counted as failures: more than the
  // throttle allows (5) and the user still logs in.
  for (int i = 0; i < 6; ++i)
    CHECK(f.call("POST", "/v1/login", login_body("officer.bantan2", "lost")).status == 403);
  CHECK(f.call("POST", "/v1/login", login_body("officer.bantan2", "other-phone")).status == 200);

  // A token without a device id cannot be used to sync as the revoked device.
  auto unbound = f.call("POST", "/v1/login", login_body("officer.bantan", ""));
  REQUIRE(unbound.status == 200);
  const std::string unbound_token = body_of(unbound).at("token");
  const json push = {
      {"device_id", "lost"},
      {"changes",
       json::array({change("lost:2", record_id(2), {{"code", "B"}, {"period", "2026"}})})}};
  auto sync = f.call("POST", "/v1/sync", push.dump(), unbound_token);
  CHECK(sync.status == 403);
  CHECK(error_code(sync) == "device_revoked");
  CHECK(f.stats().head_seq == head_before);  // nothing pushed
  CHECK(f.stats().quarantined == 0);
  auto pull_only = f.call("POST", "/v1/sync", R"({"device_id": "lost"})", unbound_token);
  CHECK(pull_only.status == 403);

  // The listing shows it.
  auto devices = f.call("GET", "/v1/devices", {}, c.admin);
  REQUIRE(devices.status == 200);
  const json listed = body_of(devices);
  bool seen = false;
  for (const auto& d : listed.at("devices")) {
    if (d.at("device_id") != "lost") continue;
    seen = true;
    CHECK(d.at("revoked") == true);
    CHECK(d.at("revoked_at").is_string());
  }
  CHECK(seen);
  REQUIRE(listed.at("revoked_devices").size() == 1);
  CHECK(listed.at("revoked_devices")[0].at("device_id") == "lost");
  CHECK(listed.at("revoked_devices")[0].at("revoked_by") == "admin");

  // Revoking again keeps the first revocation.
  f.advance(std::chrono::seconds(5));
  auto again = c.post("/v1/devices/lost/revoke", c.admin);
  REQUIRE(again.status == 200);
  CHECK(body_of(again).at("already_revoked") == true);
  CHECK(body_of(again).at("tokens_revoked") == 0);
  CHECK(body_of(again).at("revoked_at") == answer.at("revoked_at"));

  auto back = c.post("/v1/devices/lost/reinstate", c.admin);
  INFO(back.body);
  REQUIRE(back.status == 200);
  CHECK(body_of(back).at("revoked") == false);
  CHECK(body_of(back).at("was_revoked") == true);
  CHECK(f.call("GET", "/v1/forms", {}, lost1).status == 401);  // old tokens stay ended
  const auto fresh = f.login("officer.bantan", "secret-password", "lost");
  const json synced = f.sync(fresh, "lost", push.at("changes"));
  CHECK(synced.at("results")[0].at("status") == "applied");
  auto after = body_of(f.call("GET", "/v1/devices", {}, c.admin));
  CHECK(after.at("revoked_devices").empty());
  for (const auto& d : after.at("devices")) CHECK(d.at("revoked") == false);
  CHECK(body_of(c.post("/v1/devices/lost/reinstate", c.admin)).at("was_revoked") == false);
}

TEST_CASE("device revocation refuses officers, unknown devices and the caller's own device",
          "[server][revocation]") {
  Cast c;
  auto& f = c.f;
  const auto officer = f.login("officer.bantan", "secret-password", "d1");
  for (const char* target :
       {"/v1/devices/d1/revoke", "/v1/devices/admin-laptop/revoke", "/v1/devices/d1/reinstate"}) {
    INFO(target);
    auto r = c.post(target, officer);
    CHECK(r.status == 403);
    CHECK(error_code(r) == "forbidden");
  }
  CHECK(f.call("GET", "/v1/forms", {}, officer).status == 200);
  for (const char* target : {"/v1/devices/never-seen/revoke", "/v1/devices/never-seen/reinstate",
                             "/v1/devices/bad%20id/revoke"}) {
    INFO(target);
    auto r = c.post(target, c.admin);
    CHECK(r.status == 404);
    CHECK(error_code(r) == "not_found");
  }
  auto self = c.post("/v1/devices/admin-laptop/revoke", c.admin);
  CHECK(self.status == 409);
  CHECK(error_code(self) == "self_revocation");
  CHECK(f.call("GET", "/v1/forms", {}, c.admin).status == 200);
  // A device known only from a sync (its token had no device id) can be revoked.
  auto unbound = f.call("POST", "/v1/login", login_body("officer.bantan", ""));
  REQUIRE(unbound.status == 200);
  f.sync(body_of(unbound).at("token"), "synced-only", json::array());
  // update_device of an empty push is posted; a job run after it runs after it.
  REQUIRE(f.writer->run([](WriteTxn&) -> Result<void> { return {}; }).ok());
  auto revoked = c.post("/v1/devices/synced-only/revoke", c.admin);
  CHECK(revoked.status == 200);
  CHECK(body_of(revoked).at("tokens_revoked") == 0);
}

TEST_CASE("a store from before device revocations is migrated, keeping its users and tokens",
          "[server][revocation][migration]") {
  TempDir dir;
  const std::string path = (dir.path / "old.db").string();
  std::string token;
  {
    ServerFixture f({}, true, path);
    f.add_user("officer.bantan", "officer", {"14.03.02"});
    token = f.login("officer.bantan", "secret-password", "d1");
  }
  // Turn the file back into the schema before device revocations (the last
  // migration): what that migration added is gone.
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    const std::string sql =
        "DROP TABLE device_revocations; DROP INDEX tokens_by_device; PRAGMA user_version = " +
        std::to_string(kServerSchemaVersion - 1) + ";";
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    sqlite3_close(db);
    REQUIRE(rc == SQLITE_OK);
  }
  ServerFixture f({}, false, path);
  CHECK(f.call("GET", "/v1/forms", {}, token).status == 200);
  f.add_user("admin", "admin", {});
  const auto admin = f.login("admin", "secret-password", "admin-laptop");
  auto r = f.call("POST", "/v1/devices/d1/revoke", {}, admin);
  INFO(r.body);
  CHECK(r.status == 200);
  CHECK(f.call("GET", "/v1/forms", {}, token).status == 401);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(sqlite3_column_int(st, 0) == kServerSchemaVersion);
  sqlite3_finalize(st);
  sqlite3_close(db);
}
