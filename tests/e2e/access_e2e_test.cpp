// Who may call what, against the real server binary: the access matrix (every
// endpoint x no token, an expired token, a revoked token, officer A, officer B,
// admin), the scope filtering of every data endpoint between two officers, and
// revocation over the API and through fieldsync-admin.
//
// The matrix below is THE expected answer of each cell, and docs/server.md
// "Access matrix" prints the same table: the first test checks both are equal.
#include <array>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>

#include "e2e_fixture.hpp"
#include "fieldsync/hlc.hpp"
#include "fieldsync/ids.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;

namespace {

enum Role { kNone, kExpired, kRevoked, kOfficerA, kOfficerB, kAdmin, kRoles };
const std::array<std::string, kRoles> kRoleNames = {"no token",  "expired token", "revoked token",
                                                    "officer A", "officer B",     "admin"};

struct Row {
  std::string endpoint;  // "METHOD /path" as docs/server.md prints it
  std::array<std::string, kRoles> cells;
};

// Officer A: officer.bengkalis, scope 14.03.01. Officer B: officer.bantan,
// 14.03.02. {id} is a record of A's kecamatan, {A} A's kecamatan, {conflict} an
// open conflict in it; {name} / {device_id} another officer and its phone.
// A cell is the status, and for errors the error code.
const std::vector<Row>& access_matrix() {
  static const std::vector<Row> rows = {
      {"GET /healthz", {"200", "200", "200", "200", "200", "200"}},
      {"GET /metrics", {"200", "200", "200", "200", "200", "200"}},
      {"POST /v1/login", {"200", "200", "403 device_revoked", "200", "200", "200"}},
      {"GET /v1/forms",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "200", "200", "200"}},
      {"GET /v1/forms/{id}",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "200", "200", "200"}},
      {"PUT /v1/forms/{id}",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "403 forbidden",
        "403 forbidden", "200"}},
      {"POST /v1/sync",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "200", "200", "200"}},
      {"GET /v1/records",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "200", "200", "200"}},
      {"GET /v1/records/{id}",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "200", "404 not_found", "200"}},
      {"GET /v1/records/{id}/history",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "200", "404 not_found", "200"}},
      {"GET /v1/reports/kla?scope={A}",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "200", "403 forbidden", "200"}},
      {"GET /v1/export?form=kla-desa&scope={A}",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "200", "403 forbidden", "200"}},
      {"GET /v1/conflicts",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "403 forbidden",
        "403 forbidden", "200"}},
      {"GET /v1/conflicts/{conflict}",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "403 forbidden",
        "403 forbidden", "200"}},
      {"POST /v1/conflicts/{conflict}/resolve",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "403 forbidden",
        "403 forbidden", "200"}},
      {"POST /v1/conflicts/resolve-bulk",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "403 forbidden",
        "403 forbidden", "200"}},
      {"GET /v1/quarantine",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "403 forbidden",
        "403 forbidden", "200"}},
      {"GET /v1/devices",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "403 forbidden",
        "403 forbidden", "200"}},
      {"POST /v1/users/{name}/revoke",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "403 forbidden",
        "403 forbidden", "200"}},
      {"POST /v1/users/{name}/reinstate",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "403 forbidden",
        "403 forbidden", "200"}},
      {"POST /v1/devices/{device_id}/revoke",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "403 forbidden",
        "403 forbidden", "200"}},
      {"POST /v1/devices/{device_id}/reinstate",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "403 forbidden",
        "403 forbidden", "200"}},
      // Last: it ends the caller's token.
      {"POST /v1/logout",
       {"401 unauthorized", "401 unauthorized", "401 unauthorized", "200", "200", "200"}},
  };
  return rows;
}

std::string trim(std::string s) {
  const auto keep = [](char c) { return c != ' ' && c != '`' && c != '\t' && c != '\r'; };
  while (!s.empty() && !keep(s.front())) s.erase(s.begin());
  while (!s.empty() && !keep(s.back())) s.pop_back();
  return s;
}

// The "Access matrix" table of docs/server.md as rows of cells (header first).
std::vector<std::vector<std::string>> documented_matrix() {
  const std::string path = std::string(FIELDSYNC_SOURCE_DIR) + "/docs/server.md";
  std::ifstream in(path);
  REQUIRE(in);
  std::vector<std::vector<std::string>> rows;
  bool in_section = false;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("## ", 0) == 0) {
      if (in_section) break;
      in_section = line == "## Access matrix";
      continue;
    }
    if (!in_section || line.empty() || line[0] != '|') {
      if (in_section && !rows.empty() && (line.empty() || line[0] != '|')) break;
      continue;
    }
    std::vector<std::string> cells;
    std::stringstream ss(line.substr(1));
    std::string cell;
    while (std::getline(ss, cell, '|')) cells.push_back(trim(cell));
    if (!cells.empty() && cells.back().empty()) cells.pop_back();
    if (!cells.empty() && cells[0].find("---") == 0) continue;  // the separator
    rows.push_back(std::move(cells));
  }
  return rows;
}

std::string error_code_of(const HttpResponse& res) {
  json body = json::parse(res.body, nullptr, false);
  if (!body.is_object() || !body.contains("error") || !body["error"].is_object()) return {};
  return body["error"].value("code", "");
}

// The answer as a cell: "200", or "403 forbidden".
std::string cell_of(const HttpResponse& res) {
  std::string cell = std::to_string(res.status);
  if (res.status >= 300) cell += " " + error_code_of(res);
  return cell;
}

std::string login_body(const std::string& user, const std::string& password,
                       const std::string& device) {
  return json{{"username", user}, {"password", password}, {"device_id", device}}.dump();
}

constexpr const char* kUserA = "officer.bengkalis";
constexpr const char* kUserB = "officer.bantan";
constexpr const char* kVictim = "officer.victim";
constexpr const char* kVictimDevice = "dev-victim";

// The server with officer A's two records (one with an open field conflict),
// officer B's one, a victim officer logged in on its phone, and a token for each
// role. With `expired_token`, the expired one is issued by a first run of the
// server with --token-seconds 1 and the server restarted with the default
// lifetime; else that role has no token (tests that do not use it).
struct World {
  std::unique_ptr<ServerProcess> server;
  std::unique_ptr<Client> client;
  std::array<std::string, kRoles> tokens;
  std::array<std::string, kRoles> users;
  std::array<std::string, kRoles> devices;
  std::string record_a, record_a2, record_b;
  std::int64_t conflict = 0;

  explicit World(bool expired_token) {
    ServerOptions options = standard_server_options();
    options.users.push_back({kVictim, "officer", {kKecBengkalis}, {}});
    users = {kUserA, kUserA, kUserA, kUserA, kUserB, "admin"};
    devices = {"dev-none", "dev-expired", "dev-lost", "dev-a", "dev-b", "dev-admin"};
    if (expired_token) {
      options.serve_args = {"--token-seconds", "1"};
      server = start_server(options);
      client = std::make_unique<Client>(server->base_url());
      auto res = client->send("POST", "/v1/login",
                              login_body(kUserA, server->password(kUserA), "dev-expired"));
      REQUIRE(res.ok());
      REQUIRE(res->status == 200);
      const json answer = json::parse(res->body);
      tokens[kExpired] = answer.at("token").get<std::string>();
      auto expires = parse_rfc3339_ms(answer.at("expires_at").get<std::string>());
      REQUIRE(expires.ok());
      CHECK(*expires <= system_now_ms() + 1000);  // --token-seconds 1 took effect
      CHECK(client->send("GET", "/v1/forms", {}, tokens[kExpired], {})->status == 200);
      REQUIRE(server->stop().ok());
      server->set_serve_args({});
      auto started = server->start();
      REQUIRE(started.ok());
      client = std::make_unique<Client>(server->base_url());
      // Tokens expire by the server's clock, which is this machine's.
      const auto wait = std::chrono::milliseconds(*expires - system_now_ms() + 50);
      if (wait.count() > 0) std::this_thread::sleep_for(wait);
    } else {
      server = start_server(options);
      client = std::make_unique<Client>(server->base_url());
    }
    for (Role r : {kRevoked, kOfficerA, kOfficerB, kAdmin})
      tokens[r] = client->login(users[r], server->password(users[r]), devices[r]);
    client->login(kVictim, server->password(kVictim), kVictimDevice);

    // Officer A: two villages, the first with an open field conflict.
    record_a = new_uuid_v7();
    record_a2 = new_uuid_v7();
    const std::string va1 = village(kKecBengkalis, 1), va2 = village(kKecBengkalis, 2);
    json pushed = client->post(
        "/v1/sync",
        {{"device_id", "dev-a"},
         {"changes",
          {raw_change("dev-a", 1, record_a, va1, village_fields(va1, {{"children_total", 10}})),
           raw_change("dev-a", 2, record_a2, va2, village_fields(va2, {{"children_total", 20}}))}}},
        tokens[kOfficerA]);
    REQUIRE(pushed.at("results")[0].at("status") == "applied");
    REQUIRE(pushed.at("results")[1].at("status") == "applied");
    // An edit made without having seen version 1: a conflict.
    json clashed = client->post("/v1/sync",
                                {{"device_id", "dev-a"},
                                 {"changes",
                                  {raw_change("dev-a", 3, record_a, {}, {{"children_total", 11}},
                                              {{"children_total", 0}})}}},
                                tokens[kOfficerA]);
    INFO(clashed.dump());
    REQUIRE(clashed.at("results")[0].at("status") == "conflict");
    conflict = clashed.at("results")[0].at("conflicts")[0].at("id").get<std::int64_t>();
    // Officer B: one village.
    record_b = new_uuid_v7();
    const std::string vb = village(kKecBantan, 1);
    json b = client->post(
        "/v1/sync",
        {{"device_id", "dev-b"},
         {"changes",
          {raw_change("dev-b", 1, record_b, vb, village_fields(vb, {{"children_total", 5}}))}}},
        tokens[kOfficerB]);
    REQUIRE(b.at("results")[0].at("status") == "applied");

    // The revoked role: officer A's lost phone, revoked by the admin over the API.
    json revoked = client->post("/v1/devices/dev-lost/revoke", json::object(), tokens[kAdmin]);
    REQUIRE(revoked.at("tokens_revoked") == 1);
  }

  // The request of one cell.
  HttpRequest request(const std::string& endpoint, Role role) const {
    const std::string method = endpoint.substr(0, endpoint.find(' '));
    const std::string path = endpoint.substr(endpoint.find(' ') + 1);
    const std::string a = kKecBengkalis;
    std::string target, body;
    if (path == "/healthz" || path == "/metrics" || path == "/v1/forms" || path == "/v1/records" ||
        path == "/v1/conflicts" || path == "/v1/quarantine" || path == "/v1/devices" ||
        path == "/v1/logout") {
      target = path;
    } else if (path == "/v1/login") {
      target = path;
      body = login_body(users[role], server->password(users[role]), devices[role]);
    } else if (path == "/v1/forms/{id}" && method == "GET") {
      target = "/v1/forms/kla-desa";
    } else if (path == "/v1/forms/{id}") {
      target = "/v1/forms/matrix";
      body = R"({"id": "matrix", "fields": [{"name": "x", "type": "integer"}]})";
    } else if (path == "/v1/sync") {
      target = path;
      body = json{{"device_id", devices[role]}, {"since", 0}, {"limit", 10}}.dump();
    } else if (path == "/v1/records/{id}") {
      target = "/v1/records/" + record_a;
    } else if (path == "/v1/records/{id}/history") {
      target = "/v1/records/" + record_a + "/history";
    } else if (path == "/v1/reports/kla?scope={A}") {
      target = "/v1/reports/kla?scope=" + a;
    } else if (path == "/v1/export?form=kla-desa&scope={A}") {
      target = "/v1/export?form=kla-desa&scope=" + a;
    } else if (path == "/v1/conflicts/{conflict}") {
      target = "/v1/conflicts/" + std::to_string(conflict);
    } else if (path == "/v1/conflicts/{conflict}/resolve") {
      target = "/v1/conflicts/" + std::to_string(conflict) + "/resolve";
      body = R"({"keep": "server", "note": "access matrix"})";
    } else if (path == "/v1/conflicts/resolve-bulk") {
      target = path;
      body = R"({"filter": {}, "rule": "server", "dry_run": true})";
    } else if (path == "/v1/users/{name}/revoke") {
      target = std::string("/v1/users/") + kVictim + "/revoke";
    } else if (path == "/v1/users/{name}/reinstate") {
      target = std::string("/v1/users/") + kVictim + "/reinstate";
    } else if (path == "/v1/devices/{device_id}/revoke") {
      target = std::string("/v1/devices/") + kVictimDevice + "/revoke";
    } else if (path == "/v1/devices/{device_id}/reinstate") {
      target = std::string("/v1/devices/") + kVictimDevice + "/reinstate";
    } else {
      FAIL("the matrix names an endpoint this test cannot call: " << endpoint);
    }
    HttpRequest req{method, target, {}, body};
    if (!body.empty()) req.headers.emplace_back("Content-Type", "application/json");
    if (!tokens[role].empty()) req.headers.emplace_back("Authorization", "Bearer " + tokens[role]);
    return req;
  }

  HttpResponse send(const HttpRequest& req) {
    auto res = client->send(req.method, req.target, req.body, {}, req.headers);
    REQUIRE(res.ok());
    return *res;
  }

  std::set<std::string> record_ids(const std::string& token, const std::string& scope = {}) {
    std::set<std::string> out;
    for (const auto& [id, r] : client->records(token, scope)) out.insert(id);
    return out;
  }
};

}  // namespace

TEST_CASE("the access matrix of docs/server.md is the one this test checks", "[e2e][access]") {
  const auto documented = documented_matrix();
  REQUIRE_FALSE(documented.empty());
  std::vector<std::string> header = {"endpoint"};
  header.insert(header.end(), kRoleNames.begin(), kRoleNames.end());
  CHECK(documented[0] == header);
  std::vector<std::vector<std::string>> expected;
  for (const auto& row : access_matrix()) {
    std::vector<std::string> cells = {row.endpoint};
    cells.insert(cells.end(), row.cells.begin(), row.cells.end());
    expected.push_back(std::move(cells));
  }
  const std::vector<std::vector<std::string>> rows(documented.begin() + 1, documented.end());
  CHECK(rows == expected);
}

TEST_CASE("every endpoint answers every kind of caller as the access matrix says",
          "[e2e][access]") {
  World w(true);
  int cells = 0, matched = 0;
  for (const auto& row : access_matrix()) {
    for (int r = 0; r < kRoles; ++r) {
      const auto role = static_cast<Role>(r);
      const HttpRequest req = w.request(row.endpoint, role);
      const HttpResponse res = w.send(req);
      INFO(row.endpoint << " as " << kRoleNames[r] << ": " << req.method << " " << req.target
                        << " -> " << res.status << " " << res.body.substr(0, 300));
      ++cells;
      CHECK(cell_of(res) == row.cells[r]);
      if (cell_of(res) == row.cells[r]) ++matched;
      if (res.status == 401) CHECK(res.header("WWW-Authenticate") == "Bearer");
    }
  }
  WARN("access matrix: " << matched << " of " << cells << " cells as documented");
  CHECK(cells == static_cast<int>(access_matrix().size()) * kRoles);
  // The admin's cells did what they say: the conflict is resolved, the victim
  // and its phone are back.
  const json c = w.client->get("/v1/conflicts/" + std::to_string(w.conflict),
                               w.client->login("admin", w.server->password("admin"), "dev-x"));
  CHECK(c.at("status") == "resolved");
  CHECK(w.client->login(kVictim, w.server->password(kVictim), kVictimDevice).size() > 0);
}

TEST_CASE("officer B sees and changes nothing of officer A's kecamatan", "[e2e][access]") {
  World w(false);
  const std::string& a = w.tokens[kOfficerA];
  const std::string& b = w.tokens[kOfficerB];
  const std::string& admin = w.tokens[kAdmin];
  const std::set<std::string> a_records = {w.record_a, w.record_a2};
  const std::set<std::string> b_records = {w.record_b};

  SECTION("records, one record, history") {
    CHECK(w.record_ids(a) == a_records);
    CHECK(w.record_ids(b) == b_records);
    CHECK(w.record_ids(admin).size() == 3);
    CHECK(w.record_ids(b, kKecBengkalis).empty());  // asking for A's scope: nothing
    for (const auto& id : a_records) {
      for (const std::string suffix : {"", "/history"}) {
        auto res = w.client->send("GET", "/v1/records/" + id + suffix, {}, b, {});
        REQUIRE(res.ok());
        CHECK(res->status == 404);
        CHECK(error_code_of(*res) == "not_found");
        CHECK(res->body.find(id) != std::string::npos);  // the message names only the id
        CHECK(res->body.find("children_total") == std::string::npos);
      }
      CHECK(w.client->get("/v1/records/" + id + "/history", a).at("entries").size() >= 1);
    }
  }
  SECTION("pulls") {
    auto pulled = [&](const std::string& token, const std::string& device) {
      std::set<std::string> ids;
      for (const auto& e : w.client->pull_all(token, device, 1)) {
        ids.insert(e.at("record").get<std::string>());
      }
      return ids;
    };
    CHECK(pulled(b, "dev-b") == b_records);
    CHECK(pulled(a, "dev-a") == a_records);
    CHECK(pulled(admin, "dev-admin").size() == 3);
  }
  SECTION("reports") {
    auto areas = [&](const std::string& token) {
      std::map<std::string, std::int64_t> out;
      const json report = w.client->get("/v1/reports/kla", token);
      for (const auto& area : report.at("areas"))
        out[area.at("code").get<std::string>()] = area.at("villages").get<std::int64_t>();
      return out;
    };
    CHECK(areas(b) == std::map<std::string, std::int64_t>{{"14.03", 1}, {kKecBantan, 1}});
    CHECK(areas(a) == std::map<std::string, std::int64_t>{{"14.03", 2}, {kKecBengkalis, 2}});
    CHECK(areas(admin) ==
          std::map<std::string, std::int64_t>{{"14.03", 3}, {kKecBengkalis, 2}, {kKecBantan, 1}});
    // As CSV, too, B's rows never name A's kecamatan.
    auto csv = w.client->send("GET", "/v1/reports/kla?format=csv", {}, b, {});
    REQUIRE(csv.ok());
    CHECK(csv->status == 200);
    CHECK(csv->body.find(kKecBantan) != std::string::npos);
    CHECK(csv->body.find(kKecBengkalis) == std::string::npos);
  }
  SECTION("export") {
    auto exported = [&](const std::string& token) {
      auto res = w.client->send("GET", "/v1/export?form=kla-desa", {}, token, {});
      REQUIRE(res.ok());
      REQUIRE(res->status == 200);
      return res->body;
    };
    const std::string by_b = exported(b), by_a = exported(a), by_admin = exported(admin);
    CHECK(by_b.find(w.record_b) != std::string::npos);
    for (const auto& id : a_records) {
      CHECK(by_b.find(id) == std::string::npos);
      CHECK(by_a.find(id) != std::string::npos);
      CHECK(by_admin.find(id) != std::string::npos);
    }
    CHECK(by_a.find(w.record_b) == std::string::npos);
    CHECK(by_b.find(kKecBengkalis) == std::string::npos);
  }
  SECTION("pushes into A's kecamatan are rejected forbidden and change nothing") {
    const json before = w.client->get("/v1/records/" + w.record_a, admin);
    const std::string va3 = village(kKecBengkalis, 3);
    const std::string new_record = new_uuid_v7();
    json changes = {
        // a new record in A's kecamatan
        raw_change("dev-b", 10, new_record, va3, village_fields(va3)),
        // an edit of A's record (its scope left out, as for a known record)
        raw_change("dev-b", 11, w.record_a, {}, {{"children_total", 99}},
                   {{"children_total", before.at("fields").at("children_total").at("version")}}),
        // the same edit claiming B's scope
        raw_change("dev-b", 12, w.record_a, village(kKecBantan, 1), {{"children_total", 98}}),
    };
    json del = {{"id", "dev-b:13"},
                {"record", w.record_a},
                {"op", "delete"},
                {"base", {{"", before.at("version")}}},
                {"hlc", HlcClock().now().to_string()}};
    changes.push_back(del);
    const json answer =
        w.client->post("/v1/sync", {{"device_id", "dev-b"}, {"changes", changes}}, b);
    INFO(answer.dump());
    REQUIRE(answer.at("results").size() == 4);
    const std::vector<std::string> fields = {"scope", "record", "record", "record"};
    for (std::size_t i = 0; i < 4; ++i) {
      INFO("change " << i);
      const json& r = answer.at("results")[i];
      CHECK(r.at("status") == "rejected");
      CHECK(r.at("error").at("code") == "forbidden");
      CHECK(r.at("error").value("field", "") == fields[i]);
    }
    // Nothing of it reached A's data or anyone's pull.
    CHECK(w.client->get("/v1/records/" + w.record_a, admin) == before);
    CHECK(w.record_ids(admin).count(new_record) == 0);
    for (const auto& e : w.client->pull_all(a, "dev-a"))
      CHECK(e.at("device").get<std::string>() != "dev-b");
    // Every one is in the quarantine, under B's name.
    const json q = w.client->get("/v1/quarantine?device=dev-b", admin);
    CHECK(q.at("rejected").size() == 4);
    for (const auto& row : q.at("rejected")) CHECK(row.at("user") == kUserB);
  }
}

TEST_CASE("fieldsync-admin revokes and reinstates a device and a user, and nothing typed is lost",
          "[e2e][access][admin_cli]") {
  auto server = start_server();
  TempDir dir("fieldsync-e2e");
  const std::string bin = std::string(FIELDSYNC_BINARY_DIR) + "/tools/admin/fieldsync-admin";
  const std::string token_file = dir.file("admin-token.json");
  auto admin_cli = [&](std::vector<std::string> args, const std::string& input = {}) {
    std::vector<std::string> argv = {bin, "--server", server->base_url(), "--token-file",
                                     token_file};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run_command(argv, input);
    REQUIRE(r.ok());
    return *r;
  };
  auto device_line = [&](const std::string& id) {
    auto listed = admin_cli({"devices"});
    REQUIRE(listed.exit_code == 0);
    std::istringstream lines(listed.out);
    std::string line;
    while (std::getline(lines, line))
      if (json d = json::parse(line); d.at("device_id") == id) return d;
    FAIL("device " << id << " is not listed: " << listed.out);
    return json();
  };
  Client client(server->base_url());
  const std::string admin = client.login("admin", server->password("admin"), "dev-admin");

  Device phone(dir.file("phone.db"), server->base_url());
  phone.login(kUserB, server->password(kUserB));
  const std::string phone_id = phone.store().device_id();
  const std::string v1 = village(kKecBantan, 1), v2 = village(kKecBantan, 2);
  const std::string first = phone.create(v1, village_fields(v1, {{"children_total", 1}}));
  phone.sync();

  auto help = admin_cli({"devices", "--help"});
  CHECK(help.out.find("revoke") != std::string::npos);
  CHECK(help.out.find("reinstate") != std::string::npos);
  auto logged_in = admin_cli({"--user", "admin", "login"}, server->password("admin") + "\n");
  REQUIRE(logged_in.exit_code == 0);
  CHECK(device_line(phone_id).at("revoked") == false);

  // The phone is lost: revoke it.
  auto revoked = admin_cli({"devices", "revoke", phone_id});
  INFO(revoked.err);
  REQUIRE(revoked.exit_code == 0);
  CHECK(json::parse(revoked.out).at("tokens_revoked") == 1);
  CHECK(device_line(phone_id).at("revoked") == true);
  // Meanwhile the officer typed another survey on it: its sync is refused...
  const std::string second = phone.create(v2, village_fields(v2, {{"children_total", 2}}));
  auto refused = phone.try_sync();
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == Errc::unauthorized);
  // ...and so is a new login from it, even with the right password.
  auto relogin = fieldsync::login(phone.store(), phone.transport(), kUserB,
                                  server->password(kUserB), std::chrono::seconds(20));
  REQUIRE_FALSE(relogin.ok());
  CHECK(relogin.error().code == Errc::forbidden);
  CHECK(relogin.error().message.find("revoked") != std::string::npos);
  auto on_server = client.send("GET", "/v1/records/" + second, {}, admin, {});
  REQUIRE(on_server.ok());
  CHECK(on_server->status == 404);

  // Found again: reinstate it; after a new login the survey typed meanwhile arrives.
  auto reinstated = admin_cli({"devices", "reinstate", phone_id});
  REQUIRE(reinstated.exit_code == 0);
  CHECK(json::parse(reinstated.out).at("was_revoked") == true);
  CHECK(device_line(phone_id).at("revoked") == false);
  phone.login(kUserB, server->password(kUserB));
  phone.sync();
  CHECK(client.get("/v1/records/" + second, admin).at("fields").at("children_total").at("value") ==
        2);
  CHECK(client.get("/v1/records/" + first, admin).at("deleted") == false);

  // The officer leaves: revoke the user; every token of it ends.
  auto user_revoked = admin_cli({"user", "revoke", kUserB});
  INFO(user_revoked.err);
  REQUIRE(user_revoked.exit_code == 0);
  CHECK(json::parse(user_revoked.out).at("tokens_revoked") == 1);
  auto after_user = phone.try_sync();
  REQUIRE_FALSE(after_user.ok());
  CHECK(after_user.error().code == Errc::unauthorized);
  auto user_back = admin_cli({"user", "reinstate", kUserB});
  REQUIRE(user_back.exit_code == 0);
  CHECK(json::parse(user_back.out).at("was_disabled") == true);
  phone.login(kUserB, server->password(kUserB));
  CHECK(phone.try_sync().ok());

  // Refusals are reported with their code and exit status 1.
  auto self = admin_cli({"user", "revoke", "admin"});
  CHECK(self.exit_code == 1);
  CHECK(self.err.find("self_revocation") != std::string::npos);
  auto unknown = admin_cli({"devices", "revoke", "no-such-phone"});
  CHECK(unknown.exit_code == 1);
  CHECK(unknown.err.find("404") != std::string::npos);
}
