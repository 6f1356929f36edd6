// Scopes and tokens against the real server: an officer cannot write or read
// another kecamatan, only admins administer, and missing, wrong, expired,
// logged-out or revoked tokens get 401.
#include <set>

#include <sqlite3.h>

#include <catch2/catch.hpp>

#include "e2e_fixture.hpp"
#include "fieldsync/hlc.hpp"
#include "fieldsync/ids.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;

namespace {

Change raw_change(const std::string& device, std::int64_t counter, const std::string& scope) {
  Change c;
  c.id = device + ":" + std::to_string(counter);
  c.record = new_uuid_v7();
  c.form = kKlaForm;
  c.scope = scope;
  c.op = "upsert";
  c.fields = {{"desa_code", scope.size() == 13 ? scope : "14.03.01.2001"}, {"period", "2026"}};
  c.hlc = HlcClock().now().to_string();
  return c;
}

int status_of(Client& client, const std::string& method, const std::string& target,
              const std::string& token, const std::string& body = {}) {
  auto res = client.send(method, target, body, token);
  REQUIRE(res.ok());
  return res->status;
}

std::string error_code_of(const HttpResponse& res) {
  json body = json::parse(res.body, nullptr, false);
  if (!body.is_object() || !body.contains("error")) return {};
  return body["error"].value("code", "");
}

}  // namespace

TEST_CASE("an officer cannot push to another kecamatan", "[e2e][scope]") {
  auto server = start_server();
  Client client(server->base_url());
  const std::string bantan =
      client.login("officer.bantan", server->password("officer.bantan"), "dev-bantan");
  const std::string device = "dev-bantan";
  std::vector<Change> changes = {
      raw_change(device, 1, village(kKecBengkalis, 1)),  // another kecamatan
      raw_change(device, 2, "14.03.010.2001"),           // a prefix that is not a scope
      raw_change(device, 3, village(kKecBantan, 1)),     // its own: applied
  };
  json answer = client.post("/v1/sync", SyncRequest::encode(device, changes, 0, 500), bantan);
  auto decoded = SyncResponse::from_json(answer);
  REQUIRE(decoded.ok());
  REQUIRE(decoded->results.size() == 3);
  for (int i = 0; i < 2; ++i) {
    INFO("change " << i);
    CHECK(decoded->results[i].status == "rejected");
    REQUIRE(decoded->results[i].error.has_value());
    CHECK(decoded->results[i].error->code == "forbidden");
  }
  CHECK(decoded->results[2].status == "applied");

  // Only the allowed record exists on the server; the rejected ones are quarantined.
  const std::string admin = client.login("admin", server->password("admin"), "dev-admin");
  const auto records = client.records(admin);
  REQUIRE(records.size() == 1);
  CHECK(records.begin()->first == changes[2].record);
  json quarantine = client.get("/v1/quarantine?device=" + device, admin);
  std::set<std::string> quarantined;
  for (const auto& q : quarantine.at("rejected")) {
    INFO(q.dump());
    CHECK(q.at("error").at("code") == "forbidden");
    CHECK(q.at("user") == "officer.bantan");
    quarantined.insert(q.at("change_id").get<std::string>());
  }
  CHECK(quarantined == std::set<std::string>{changes[0].id, changes[1].id});
}

TEST_CASE("an officer never pulls or reads entries of another kecamatan", "[e2e][scope]") {
  auto server = start_server();
  TempDir dir("fieldsync-e2e");
  Device bengkalis(dir.file("bengkalis.db"), server->base_url());
  Device bantan(dir.file("bantan.db"), server->base_url());
  bengkalis.login("officer.bengkalis", server->password("officer.bengkalis"));
  bantan.login("officer.bantan", server->password("officer.bantan"));
  std::vector<std::string> theirs;
  for (int i = 1; i <= 3; ++i) {
    const std::string code = village(kKecBengkalis, i);
    theirs.push_back(
        bengkalis.create(code, {{"desa_code", code}, {"period", "2026"}, {"births", i}}));
  }
  const std::string code = village(kKecBantan, 1);
  const std::string mine =
      bantan.create(code, {{"desa_code", code}, {"period", "2026"}, {"births", 9}});
  bengkalis.sync();
  bantan.sync();
  bengkalis.sync();

  Client client(server->base_url());
  const std::string token =
      client.login("officer.bantan", server->password("officer.bantan"), "raw-bantan");
  for (const auto& e : client.pull_all(token, "raw-bantan", 2)) {
    INFO(e.dump());
    CHECK(scope_covers(kKecBantan, e.at("scope").get<std::string>()));
  }
  const auto visible = client.records(token);
  CHECK(visible.size() == 1);
  CHECK(visible.count(mine) == 1);
  check_device_matches_server(bantan, visible);
  for (const auto& r : bantan.records()) CHECK(scope_covers(kKecBantan, r.scope));

  // Direct reads of another kecamatan's record look like it does not exist.
  for (const auto& id : theirs) {
    auto res = client.send("GET", "/v1/records/" + id, {}, token, {});
    REQUIRE(res.ok());
    CHECK(res->status == 404);
    CHECK(error_code_of(*res) == "not_found");
    auto history = client.send("GET", "/v1/records/" + id + "/history", {}, token, {});
    REQUIRE(history.ok());
    CHECK(history->status == 404);
  }
  // Asking for another scope's records by filter returns none of them.
  const auto filtered = client.records(token, kKecBengkalis);
  CHECK(filtered.empty());
  // The Bengkalis officer sees its three and not Bantan's.
  const auto theirs_visible = client.records(
      client.login("officer.bengkalis", server->password("officer.bengkalis"), "raw-bengkalis"));
  CHECK(theirs_visible.size() == 3);
  CHECK(theirs_visible.count(mine) == 0);
}

TEST_CASE("officers cannot use the admin API", "[e2e][scope]") {
  auto server = start_server();
  Client client(server->base_url());
  const std::string officer =
      client.login("officer.bengkalis", server->password("officer.bengkalis"), "d1");
  const std::string form = R"({"id": "other", "fields": [{"name": "x", "type": "integer"}]})";
  CHECK(status_of(client, "GET", "/v1/conflicts", officer) == 403);
  CHECK(status_of(client, "GET", "/v1/quarantine", officer) == 403);
  CHECK(status_of(client, "GET", "/v1/devices", officer) == 403);
  CHECK(status_of(client, "PUT", "/v1/forms/other", officer, form) == 403);
  CHECK(status_of(client, "POST", "/v1/conflicts/1/resolve", officer, R"({"keep": "server"})") ==
        403);
  const std::string admin = client.login("admin", server->password("admin"), "d2");
  CHECK(status_of(client, "PUT", "/v1/forms/other", admin, form) == 200);
}

TEST_CASE("wrong, logged-out and revoked tokens get 401", "[e2e][auth]") {
  auto server = start_server();
  Client client(server->base_url());
  const std::string body = R"({"device_id": "d1", "since": 0, "limit": 10})";

  SECTION("wrong credentials") {
    auto res = client.send("POST", "/v1/login",
                           json{{"username", "officer.bengkalis"},
                                {"password", "not-the-password"},
                                {"device_id", "d1"}}
                               .dump());
    REQUIRE(res.ok());
    CHECK(res->status == 401);
    CHECK(error_code_of(*res) == "unauthorized");
    auto unknown =
        client.send("POST", "/v1/login",
                    json{{"username", "nobody"}, {"password", "x"}, {"device_id", "d1"}}.dump());
    REQUIRE(unknown.ok());
    CHECK(unknown->status == 401);
  }
  SECTION("no token, a malformed header, an unknown token") {
    CHECK(status_of(client, "POST", "/v1/sync", "", body) == 401);
    auto basic = client.send(
        "POST", "/v1/sync", body, {},
        {{"Content-Type", "application/json"}, {"Authorization", "Basic YWRtaW46eA=="}});
    REQUIRE(basic.ok());
    CHECK(basic->status == 401);
    CHECK(status_of(client, "POST", "/v1/sync", "not-a-token", body) == 401);
    const std::string good =
        client.login("officer.bengkalis", server->password("officer.bengkalis"), "d1");
    std::string forged = good;
    forged.back() = forged.back() == 'A' ? 'B' : 'A';
    CHECK(status_of(client, "POST", "/v1/sync", forged, body) == 401);
    CHECK(status_of(client, "POST", "/v1/sync", good, body) == 200);
  }
  SECTION("after logout") {
    const std::string token =
        client.login("officer.bengkalis", server->password("officer.bengkalis"), "d1");
    const std::string other =
        client.login("officer.bengkalis", server->password("officer.bengkalis"), "d2");
    CHECK(status_of(client, "POST", "/v1/sync", token, body) == 200);
    auto out = client.send("POST", "/v1/logout", "{}", token);
    REQUIRE(out.ok());
    CHECK(out->status / 100 == 2);
    auto res = client.send("POST", "/v1/sync", body, token);
    REQUIRE(res.ok());
    CHECK(res->status == 401);
    CHECK(error_code_of(*res) == "unauthorized");
    CHECK(status_of(client, "POST", "/v1/sync", other, body) == 200);  // only that token ended
  }
  SECTION("expired") {
    const std::string token =
        client.login("officer.bengkalis", server->password("officer.bengkalis"), "dexp");
    CHECK(status_of(client, "POST", "/v1/sync", token, body) == 200);
    // Tokens live 1 day at least; age this one in the server's store instead of
    // waiting (docs/server.md: tokens(expires_at) in Unix ms).
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(server->db_path().c_str(), &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    const std::string sql =
        "UPDATE tokens SET expires_at = " + std::to_string(system_now_ms() - 1000) +
        " WHERE device_id = 'dexp'";
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    const int changed = sqlite3_changes(db);
    sqlite3_close(db);
    REQUIRE(rc == SQLITE_OK);
    REQUIRE(changed == 1);
    auto res = client.send("POST", "/v1/sync", body, token);
    REQUIRE(res.ok());
    CHECK(res->status == 401);
    CHECK(error_code_of(*res) == "unauthorized");
  }
  SECTION("revoked by an administrator") {
    const std::string token =
        client.login("officer.bantan", server->password("officer.bantan"), "d1");
    CHECK(status_of(client, "POST", "/v1/sync", token, body) == 200);
    TempDir dir("fieldsync-e2e");
    Device device(dir.file("d.db"), server->base_url());
    device.login("officer.bantan", server->password("officer.bantan"));
    CHECK(device.try_sync().ok());

    auto revoked = server->cli({"user", "revoke", "officer.bantan"});
    REQUIRE(revoked.ok());
    INFO(revoked->out << revoked->err);
    REQUIRE(revoked->exit_code == 0);
    CHECK(status_of(client, "POST", "/v1/sync", token, body) == 401);
    // A device whose token was revoked gets Errc::unauthorized from sync().
    auto r = device.try_sync();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unauthorized);
    // The user is disabled: logging in again fails too.
    auto again = client.send("POST", "/v1/login",
                             json{{"username", "officer.bantan"},
                                  {"password", server->password("officer.bantan")},
                                  {"device_id", "d1"}}
                                 .dump());
    REQUIRE(again.ok());
    CHECK(again->status == 401);
    // Other users are untouched.
    const std::string other =
        client.login("officer.bengkalis", server->password("officer.bengkalis"), "d3");
    CHECK(status_of(client, "POST", "/v1/sync", other, body) == 200);
  }
}
