// Each conflict kind end to end with the real server binary and real device
// stores: opened, shown to the admin with every candidate, resolved, pulled by
// every device, and the review mark cleared there. Plus history, the report and
// the export over HTTP (issue #4).
#include <catch2/catch.hpp>

#include <set>

#include "e2e_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;

namespace {

struct Cast {
  std::unique_ptr<ServerProcess> server;
  TempDir dir{"fieldsync-conflict-e2e"};
  Client client;
  std::string admin;

  static ServerOptions options() {
    ServerOptions o = standard_server_options();
    o.users.push_back({"officer.bengkalis3", "officer", {kKecBengkalis}, {}});
    return o;
  }
  Cast()
      : server(start_server(options())),
        client(server->base_url()),
        admin(client.login("admin", server->password("admin"), "e2e-admin")) {}

  std::unique_ptr<Device> device(const std::string& name, const std::string& user) {
    auto d = std::make_unique<Device>(dir.file(name + ".db"), server->base_url());
    d->login(user, server->password(user));
    return d;
  }
  json open_conflicts() { return client.get("/v1/conflicts?status=open", admin).at("conflicts"); }
  json show(std::int64_t id) { return client.get("/v1/conflicts/" + std::to_string(id), admin); }
  json resolve(std::int64_t id, const json& body, int status = 200) {
    return client.post("/v1/conflicts/" + std::to_string(id) + "/resolve", body, admin, status);
  }
  // Every device equals the server and has no review mark left.
  void check_converged(const std::vector<Device*>& devices) {
    sync_until_quiet(devices);
    const auto records = client.records(admin);
    for (Device* d : devices) {
      check_device_matches_server(*d, records);
      for (const auto& r : d->records()) {
        INFO(d->user() << " " << r.id);
        CHECK_FALSE(r.under_review);
        for (const auto& [name, f] : r.fields) {
          INFO(name);
          CHECK_FALSE(f.under_review);
          CHECK_FALSE(f.my_value.has_value());
        }
      }
    }
    CHECK(open_conflicts().empty());
  }
};

// Every candidate carries who, where, which form version, when.
void check_candidate_shape(const json& k) {
  for (const char* key :
       {"value", "op", "change", "author", "device", "hlc", "received_at", "form_version"}) {
    INFO(key);
    CHECK(k.contains(key));
  }
  CHECK(k.at("form_version") == 1);
  CHECK(!k.at("hlc").get<std::string>().empty());
}

}  // namespace

TEST_CASE("three devices edit one field: one conflict, two candidates, all converge",
          "[e2e][conflict][field]") {
  Cast cast;
  auto a = cast.device("a", "officer.bengkalis");
  auto b = cast.device("b", "officer.bengkalis2");
  auto c = cast.device("c", "officer.bengkalis3");
  const std::string code = village(kKecBengkalis, 3);
  const std::string id = a->create(code, village_fields(code, {{"children_total", 100}}));
  sync_until_quiet({a.get(), b.get(), c.get()});

  a->edit(id, {{"children_total", 110}});
  b->edit(id, {{"children_total", 120}});
  c->edit(id, {{"children_total", 130}});
  a->sync();
  CHECK(b->sync().conflicts == 1);
  CHECK(c->sync().conflicts == 1);

  json open = cast.open_conflicts();
  REQUIRE(open.size() == 1);
  const std::int64_t cid = open[0].at("id");
  json shown = cast.show(cid);
  CHECK(shown.at("kind") == "field");
  CHECK(shown.at("field") == "children_total");
  CHECK(shown.at("server").at("value") == 110);
  CHECK(shown.at("server").at("author") == "officer.bengkalis");
  REQUIRE(shown.at("candidates").size() == 2);
  CHECK(shown.at("candidates")[0].at("value") == 120);
  CHECK(shown.at("candidates")[0].at("device") == b->store().device_id());
  CHECK(shown.at("candidates")[1].at("value") == 130);
  CHECK(shown.at("candidates")[1].at("author") == "officer.bengkalis3");
  for (const auto& k : shown.at("candidates")) check_candidate_shape(k);

  // Every device marks the field; each officer still sees their own losing value.
  sync_until_quiet({a.get(), b.get(), c.get()});
  for (Device* d : {a.get(), b.get(), c.get()}) {
    const FieldState f = d->get(id).fields.at("children_total");
    CHECK(f.under_review);
    CHECK(f.conflict_id == cid);
    CHECK(f.value == 110);
  }
  CHECK(b->get(id).fields.at("children_total").my_value == json(120));
  CHECK(c->get(id).fields.at("children_total").my_value == json(130));

  cast.resolve(cid, {{"keep", "candidate"}, {"candidate", 1}, {"note", "c measured again"}});
  cast.resolve(cid, {{"keep", "server"}}, 409);
  cast.check_converged({a.get(), b.get(), c.get()});
  for (Device* d : {a.get(), b.get(), c.get()})
    CHECK(d->get(id).fields.at("children_total").value == 130);

  // The history keeps both losing values and the resolution, oldest first.
  json h = cast.client.get("/v1/records/" + id + "/history", cast.admin);
  std::set<json> offered;
  for (const auto& e : h.at("entries"))
    if (e.contains("candidates"))
      for (const auto& k : e.at("candidates")) offered.insert(k.at("value"));
  CHECK(offered == std::set<json>{120, 130});
  CHECK(h.at("entries").back().at("origin") == "admin:admin:" + std::to_string(cid));
}

TEST_CASE("delete against edit, both ways, resolved and cleared on every device",
          "[e2e][conflict][delete]") {
  Cast cast;
  auto a = cast.device("a", "officer.bengkalis");
  auto b = cast.device("b", "officer.bengkalis2");
  const std::string code = village(kKecBengkalis, 4);
  const std::string id = a->create(code, village_fields(code, {{"children_total", 50}}));
  sync_until_quiet({a.get(), b.get()});

  SECTION("a deletes, b edits unaware: keep the record with b's edit") {
    REQUIRE(a->store().remove(id).ok());
    b->edit(id, {{"children_total", 55}});
    a->sync();
    CHECK(b->sync().conflicts == 1);
    json open = cast.open_conflicts();
    REQUIRE(open.size() == 1);
    const std::int64_t cid = open[0].at("id");
    json shown = cast.show(cid);
    CHECK(shown.at("kind") == "delete");
    CHECK(shown.at("field") == "");
    CHECK(shown.at("server").at("value").is_null());
    REQUIRE(shown.at("candidates").size() == 1);
    CHECK(shown.at("candidates")[0].at("op") == "upsert");
    CHECK(shown.at("candidates")[0].at("value") == json{{"children_total", 55}});
    check_candidate_shape(shown.at("candidates")[0]);
    sync_until_quiet({a.get(), b.get()});
    CHECK(b->get(id).under_review);

    cast.resolve(cid, {{"keep", "record"}, {"candidate", 0}});
    cast.check_converged({a.get(), b.get()});
    for (Device* d : {a.get(), b.get()}) {
      CHECK_FALSE(d->get(id).deleted);
      CHECK(d->get(id).fields.at("children_total").value == 55);
    }
  }
  SECTION("a edits, b deletes unaware: keep it deleted") {
    a->edit(id, {{"children_total", 60}});
    REQUIRE(b->store().remove(id).ok());
    a->sync();
    CHECK(b->sync().conflicts == 1);
    json open = cast.open_conflicts();
    REQUIRE(open.size() == 1);
    const std::int64_t cid = open[0].at("id");
    json shown = cast.show(cid);
    CHECK(shown.at("kind") == "delete");
    CHECK(shown.at("server").at("value").at("children_total") == 60);
    REQUIRE(shown.at("candidates").size() == 1);
    CHECK(shown.at("candidates")[0].at("op") == "delete");
    CHECK(shown.at("candidates")[0].at("value").is_null());
    check_candidate_shape(shown.at("candidates")[0]);

    cast.resolve(cid, {{"keep", "deleted"}});
    cast.check_converged({a.get(), b.get()});
    for (Device* d : {a.get(), b.get()}) CHECK(d->get(id).deleted);
  }
}

TEST_CASE("two officers survey the same village: a duplicate, merged into one",
          "[e2e][conflict][duplicate]") {
  Cast cast;
  auto a = cast.device("a", "officer.bengkalis");
  auto b = cast.device("b", "officer.bengkalis2");
  const std::string code = village(kKecBengkalis, 5);
  const std::string ra = a->create(code, village_fields(code, {{"children_total", 70}}));
  const std::string rb = b->create(code, village_fields(code, {{"has_forum_anak", true}}));
  a->sync();
  b->sync();
  json open = cast.open_conflicts();
  REQUIRE(open.size() == 1);
  const std::int64_t cid = open[0].at("id");
  json shown = cast.show(cid);
  CHECK(shown.at("kind") == "duplicate_record");
  CHECK(std::set<json>(shown.at("records").begin(), shown.at("records").end()) ==
        std::set<json>{ra, rb});
  REQUIRE(!shown.at("candidates").empty());
  for (const auto& k : shown.at("candidates")) {
    check_candidate_shape(k);
    CHECK(k.contains("record"));
  }
  sync_until_quiet({a.get(), b.get()});
  CHECK((a->get(ra).under_review || a->get(rb).under_review));

  SECTION("merge into a's record") {
    cast.resolve(cid, {{"merge_into", ra}});
    cast.check_converged({a.get(), b.get()});
    for (Device* d : {a.get(), b.get()}) {
      CHECK_FALSE(d->get(ra).deleted);
      CHECK(d->get(ra).fields.at("children_total").value == 70);
      CHECK(d->get(ra).fields.at("has_forum_anak").value == true);
      CHECK(d->get(rb).deleted);
    }
  }
  SECTION("keep both") {
    cast.resolve(cid, {{"keep", "both"}});
    cast.check_converged({a.get(), b.get()});
    for (Device* d : {a.get(), b.get()}) {
      CHECK_FALSE(d->get(ra).deleted);
      CHECK_FALSE(d->get(rb).deleted);
    }
  }
}

TEST_CASE("officers cannot review conflicts, and reports and exports stay in their scopes",
          "[e2e][conflict][scope]") {
  Cast cast;
  auto a = cast.device("a", "officer.bengkalis");
  auto c = cast.device("c", "officer.bantan");
  const std::string va = village(kKecBengkalis, 6);
  const std::string vc = village(kKecBantan, 7);
  a->create(va, village_fields(va, {{"children_total", 10}, {"officer_notes", "a, \"b\"\nc ✓"}}));
  c->create(vc, village_fields(vc, {{"children_total", 20}}));
  sync_until_quiet({a.get(), c.get()});
  const std::string officer =
      cast.client.login("officer.bengkalis", cast.server->password("officer.bengkalis"), "x");
  auto status = [&](const std::string& method, const std::string& target) {
    auto r =
        cast.client.send(method, target, method == "POST" ? R"({"rule": "server"})" : "", officer);
    REQUIRE(r.ok());
    return r->status;
  };
  CHECK(status("GET", "/v1/conflicts") == 403);
  CHECK(status("POST", "/v1/conflicts/1/resolve") == 403);
  CHECK(status("POST", "/v1/conflicts/resolve-bulk") == 403);
  CHECK(status("GET", "/v1/reports/kla?scope=14.03.02") == 403);
  CHECK(status("GET", "/v1/export?form=kla-desa&scope=14.03.02") == 403);

  json mine = cast.client.get("/v1/reports/kla", officer);
  std::set<std::string> codes;
  for (const auto& area : mine.at("areas")) codes.insert(area.at("code"));
  CHECK(codes == std::set<std::string>{"14.03", kKecBengkalis});
  json all = cast.client.get("/v1/reports/kla", cast.admin);
  CHECK(all.at("areas").size() == 3);
  CHECK(all.at("areas")[0].at("indicators").size() == 24);

  auto exported = cast.client.send("GET", "/v1/export?form=kla-desa&format=csv", {}, officer);
  REQUIRE(exported.ok());
  CHECK(exported->status == 200);
  CHECK(exported->body.find(va) != std::string::npos);
  CHECK(exported->body.find(vc) == std::string::npos);
  CHECK(exported->body.find("\"a, \"\"b\"\"\nc ✓\"") != std::string::npos);
}

TEST_CASE("fieldsync-admin reviews and resolves a conflict against the real server",
          "[e2e][conflict][admin_cli]") {
  Cast cast;
  const std::string bin = std::string(FIELDSYNC_BINARY_DIR) + "/tools/admin/fieldsync-admin";
  const std::string token_file = cast.dir.file("admin-token.json");
  auto admin_cli = [&](std::vector<std::string> args, const std::string& input = {}) {
    std::vector<std::string> argv = {bin, "--server", cast.server->base_url(), "--token-file",
                                     token_file};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run_command(argv, input);
    REQUIRE(r.ok());
    return *r;
  };
  auto a = cast.device("a", "officer.bengkalis");
  auto b = cast.device("b", "officer.bengkalis2");
  const std::string code = village(kKecBengkalis, 8);
  const std::string id = a->create(code, village_fields(code, {{"children_total", 1}}));
  sync_until_quiet({a.get(), b.get()});
  a->edit(id, {{"children_total", 2}});
  b->edit(id, {{"children_total", 3}});
  a->sync();
  b->sync();

  // Not logged in yet: refused; then --user logs in with the password on stdin.
  CHECK(admin_cli({"conflicts", "list"}).exit_code == 1);
  auto listed =
      admin_cli({"--user", "admin", "conflicts", "list"}, cast.server->password("admin") + "\n");
  INFO(listed.err);
  REQUIRE(listed.exit_code == 0);
  const json c = json::parse(listed.out.substr(0, listed.out.find('\n')));
  CHECK(c.at("record") == id);
  const std::string cid = std::to_string(c.at("id").get<std::int64_t>());

  // The token is kept: no password needed from here on.
  auto shown = admin_cli({"conflicts", "show", cid});
  REQUIRE(shown.exit_code == 0);
  CHECK(json::parse(shown.out).at("candidates").size() == 1);
  auto dry = admin_cli({"conflicts", "bulk", "--rule", "server", "--dry-run"});
  REQUIRE(dry.exit_code == 0);
  CHECK(json::parse(dry.out).at("would_resolve") == 1);
  auto resolved =
      admin_cli({"conflicts", "resolve", cid, "--keep", "candidate", "--candidate", "0"});
  INFO(resolved.err);
  REQUIRE(resolved.exit_code == 0);
  CHECK(json::parse(resolved.out).at("seqs").size() == 1);
  auto again = admin_cli({"conflicts", "resolve", cid, "--keep", "server"});
  CHECK(again.exit_code == 1);
  CHECK(again.err.find("already_resolved") != std::string::npos);
  sync_until_quiet({a.get(), b.get()});
  CHECK(a->get(id).fields.at("children_total").value == 3);

  auto history = admin_cli({"history", id});
  REQUIRE(history.exit_code == 0);
  CHECK(json::parse(history.out).at("entries").size() == 4);
  auto devices = admin_cli({"devices"});
  REQUIRE(devices.exit_code == 0);
  INFO(devices.out);
  CHECK(devices.out.find(a->store().device_id()) != std::string::npos);
  auto report = admin_cli({"report", "kla", "--csv"});
  REQUIRE(report.exit_code == 0);
  CHECK(report.out.rfind("level,code,", 0) == 0);
  auto exported = admin_cli({"export", "kla-desa"});
  REQUIRE(exported.exit_code == 0);
  CHECK(exported.out.find(id) != std::string::npos);

  // An officer's token is refused the admin API.
  auto officer = admin_cli({"--user", "officer.bengkalis", "conflicts", "list"},
                           cast.server->password("officer.bengkalis") + "\n");
  CHECK(officer.exit_code == 1);
  CHECK(officer.err.find("403") != std::string::npos);
}
