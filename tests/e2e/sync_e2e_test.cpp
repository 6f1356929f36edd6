// Devices syncing real SQLite stores with the real server over HTTP: field-level
// merge, a real conflict and its resolution, paged pulls, replayed requests, and
// convergence with no loss as a property over many seeds of random offline edits.
#include <algorithm>
#include <map>
#include <random>
#include <set>

#include <catch2/catch.hpp>

#include "e2e_fixture.hpp"
#include "fieldsync/ids.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;

namespace {

struct Cast {
  std::unique_ptr<ServerProcess> server;
  TempDir dir{"fieldsync-e2e"};
  Client client;
  std::string admin;

  explicit Cast(std::unique_ptr<ServerProcess> s)
      : server(std::move(s)),
        client(server->base_url()),
        admin(client.login("admin", server->password("admin"), "e2e-admin")) {}
  Cast() : Cast(start_server()) {}

  std::unique_ptr<Device> device(const std::string& name, const std::string& user) {
    auto d = std::make_unique<Device>(dir.file(name + ".db"), server->base_url());
    d->login(user, server->password(user));
    return d;
  }
  std::string token_of(const std::string& user) {
    return client.login(user, server->password(user), "e2e-" + user);
  }
  json conflicts(const std::string& query = {}) {
    json all = json::array();
    std::int64_t after = 0;
    for (int page = 0; page < 1000; ++page) {
      json body =
          client.get("/v1/conflicts?limit=100&after=" + std::to_string(after) + query, admin);
      for (const auto& c : body.at("conflicts")) {
        all.push_back(c);
        after = c.at("id").get<std::int64_t>();
      }
      if (!body.at("more").get<bool>()) break;
    }
    return all;
  }
};

}  // namespace

TEST_CASE("two officers edit different fields of one village offline: both edits stay",
          "[e2e][merge]") {
  Cast cast;
  auto a = cast.device("a", "officer.bengkalis");
  auto b = cast.device("b", "officer.bengkalis2");
  const std::string id =
      a->create(village(kKecBengkalis, 1),
                village_fields(village(kKecBengkalis, 1), {{"children_total", 100}}));
  a->sync();
  b->sync();
  REQUIRE(b->get(id).fields.at("children_total").value == 100);

  a->edit(id, {{"children_total", 120}});
  b->edit(id, {{"has_forum_anak", true}, {"child_friendly_play_spaces", 3}});

  SECTION("A syncs first") {
    a->sync();
    b->sync();
  }
  SECTION("B syncs first") {
    b->sync();
    a->sync();
  }
  sync_until_quiet({a.get(), b.get()});

  const auto records = cast.client.records(cast.token_of("officer.bengkalis"));
  REQUIRE(records.count(id) == 1);
  const json& srv = records.at(id);
  CHECK(server_value(srv, "children_total") == 120);
  CHECK(server_value(srv, "has_forum_anak") == true);
  CHECK(server_value(srv, "child_friendly_play_spaces") == 3);
  CHECK(cast.conflicts().empty());
  for (Device* d : {a.get(), b.get()}) {
    check_device_matches_server(*d, records);
    for (const auto& [name, field] : d->get(id).fields) {
      INFO(name);
      CHECK_FALSE(field.under_review);
    }
  }
}

TEST_CASE("a real conflict: the server value stays, the field goes under review until resolved",
          "[e2e][conflict]") {
  Cast cast;
  auto a = cast.device("a", "officer.bengkalis");
  auto b = cast.device("b", "officer.bengkalis2");
  const std::string code = village(kKecBengkalis, 2);
  const std::string id = a->create(code, village_fields(code, {{"children_total", 100}}));
  a->sync();
  b->sync();

  a->edit(id, {{"children_total", 150}});
  b->edit(id, {{"children_total", 175}, {"has_patbm", true}});
  const SyncProgress pa = a->sync();
  CHECK(pa.applied == 1);
  CHECK(pa.conflicts == 0);
  const SyncProgress pb = b->sync();
  CHECK(pb.conflicts == 1);
  CHECK(pb.applied == 0);

  // On B: the server's value is visible, B's own value is kept for review.
  const RecordView on_b = b->get(id);
  const FieldState& total_b = on_b.fields.at("children_total");
  CHECK(total_b.value == 150);
  CHECK(total_b.under_review);
  REQUIRE(total_b.my_value.has_value());
  CHECK(*total_b.my_value == 175);
  CHECK(total_b.conflict_id > 0);
  CHECK(on_b.fields.at("has_patbm").value == true);  // no conflict there: applied
  CHECK_FALSE(on_b.fields.at("has_patbm").under_review);

  json open = cast.conflicts("&status=open");
  REQUIRE(open.size() == 1);
  const json& c = open[0];
  CHECK(c.at("id").get<std::int64_t>() == total_b.conflict_id);
  CHECK(c.at("kind") == "field");
  CHECK(c.at("record") == id);
  CHECK(c.at("field") == "children_total");
  CHECK(c.at("server").at("value") == 150);
  REQUIRE(c.at("candidates").size() == 1);
  CHECK(c.at("candidates")[0].at("value") == 175);
  CHECK(c.at("candidates")[0].at("author") == "officer.bengkalis2");
  CHECK(c.at("candidates")[0].at("device") == b->store().device_id());

  // A learns about the conflict from the log entry of B's change.
  a->sync();
  CHECK(a->get(id).fields.at("children_total").under_review);
  CHECK(a->get(id).fields.at("children_total").value == 150);

  // An officer may not resolve; the admin keeps B's value.
  const std::string resolve = "/v1/conflicts/" + std::to_string(total_b.conflict_id) + "/resolve";
  cast.client.post(resolve, json{{"keep", "candidate"}, {"candidate", 0}},
                   cast.token_of("officer.bengkalis"), 403);
  cast.client.post(
      resolve,
      json{{"keep", "candidate"}, {"candidate", 0}, {"note", "checked with the village head"}},
      cast.admin);
  cast.client.post(resolve, json{{"keep", "server"}}, cast.admin, 409);

  sync_until_quiet({a.get(), b.get()});
  for (Device* d : {a.get(), b.get()}) {
    const FieldState f = d->get(id).fields.at("children_total");
    CHECK(f.value == 175);
    CHECK_FALSE(f.under_review);
  }
  CHECK(cast.conflicts("&status=open").empty());
  const auto records = cast.client.records(cast.admin);
  check_device_matches_server(*a, records);
  check_device_matches_server(*b, records);
}

TEST_CASE("pulls page through the log in limit-sized pages", "[e2e][pull]") {
  Cast cast;
  auto a = cast.device("a", "officer.bengkalis");
  auto b = cast.device("b", "officer.bengkalis2");
  for (int i = 1; i <= 12; ++i) {
    const std::string code = village(kKecBengkalis, i);
    a->create(code, village_fields(code, {{"households_total", 10 * i}}));
  }
  SyncOptions push = Device::quick_options();
  push.batch_size = 5;
  const SyncProgress pa = a->sync(push);
  CHECK(pa.applied == 12);
  CHECK(pa.round_trips >= 3);

  // Raw: the first page stops at the limit and says there is more.
  json page =
      cast.client.post("/v1/sync", json{{"device_id", "raw-pager"}, {"since", 0}, {"limit", 4}},
                       cast.token_of("officer.bengkalis2"));
  REQUIRE(page.at("changes").size() == 4);
  CHECK(page.at("more") == true);
  CHECK(page.at("cursor") == page.at("changes")[3].at("seq"));

  SyncOptions pull = Device::quick_options();
  pull.pull_limit = 4;
  const SyncProgress pb = b->sync(pull);
  CHECK(pb.received == 12);
  CHECK(pb.round_trips >= 3);
  const auto records = cast.client.records(cast.token_of("officer.bengkalis2"));
  CHECK(records.size() == 12);
  check_device_matches_server(*b, records);
  check_device_matches_server(*a, records);
}

TEST_CASE("a request whose answer was lost is replayed, not applied twice", "[e2e][replay]") {
  Cast cast;
  auto a = cast.device("a", "officer.bengkalis");
  const std::string code = village(kKecBengkalis, 3);
  const std::string id = a->create(code, village_fields(code, {{"births", 40}}));
  a->edit(id, {{"births", 41}});  // coalesces into the same unsent change
  auto batch = a->store().next_batch(10);
  REQUIRE(batch.ok());
  REQUIRE(batch->size() == 1);
  auto token = a->store().setting("token");
  REQUIRE(token.ok());
  HttpRequest req{"POST",
                  "/v1/sync",
                  {{"Authorization", "Bearer " + **token}, {"Content-Type", "application/json"}},
                  SyncRequest::encode(a->store().device_id(), *batch, 0, 500).dump()};

  auto first = a->transport().send(req, std::chrono::seconds(20));
  REQUIRE(first.ok());
  REQUIRE(first->status == 200);
  const std::vector<json> log_after_first = cast.client.pull_all(cast.admin, "e2e-admin-log");

  // The answer is "lost": the device sends the very same request again.
  auto second = a->transport().send(req, std::chrono::seconds(20));
  REQUIRE(second.ok());
  REQUIRE(second->status == 200);
  auto r1 = SyncResponse::from_json(json::parse(first->body));
  auto r2 = SyncResponse::from_json(json::parse(second->body));
  REQUIRE(r1.ok());
  REQUIRE(r2.ok());
  REQUIRE(r1->results.size() == 1);
  REQUIRE(r2->results.size() == 1);
  CHECK(r1->results[0].status == "applied");
  CHECK_FALSE(r1->results[0].replayed);
  CHECK(r2->results[0].replayed);
  CHECK(r2->results[0].status == r1->results[0].status);
  CHECK(r2->results[0].seq == r1->results[0].seq);
  CHECK(r2->results[0].versions == r1->results[0].versions);

  const std::vector<json> log_after_second = cast.client.pull_all(cast.admin, "e2e-admin-log");
  CHECK(log_after_second == log_after_first);
  REQUIRE(log_after_first.size() == 1);
  CHECK(log_after_first[0].at("origin") == (*batch)[0].id);

  // The device applies the replayed answer; everything settles.
  REQUIRE(a->store().apply_sync(*batch, *r2).ok());
  const SyncProgress p = a->sync();
  CHECK(p.sent == 0);
  auto pending = a->store().outbox();
  REQUIRE(pending.ok());
  CHECK(pending->empty());
  const auto records = cast.client.records(cast.admin);
  REQUIRE(records.size() == 1);
  CHECK(server_value(records.at(id), "births") == 41);
  check_device_matches_server(*a, records);
}

TEST_CASE("two villages surveyed twice as new records: applied, linked as duplicates",
          "[e2e][conflict]") {
  Cast cast;
  auto a = cast.device("a", "officer.bengkalis");
  auto b = cast.device("b", "officer.bengkalis2");
  const std::string code = village(kKecBengkalis, 4);
  const std::string ra = a->create(code, village_fields(code, {{"active_posyandu", 2}}));
  const std::string rb = b->create(code, village_fields(code, {{"active_posyandu", 3}}));
  CHECK(a->sync().applied == 1);
  const SyncProgress pb = b->sync();
  CHECK(pb.applied == 1);
  sync_until_quiet({a.get(), b.get()});
  json dups = cast.conflicts("&kind=duplicate_record");
  REQUIRE(dups.size() == 1);
  std::set<std::string> linked;
  for (const auto& r : dups[0].at("records")) linked.insert(r.get<std::string>());
  CHECK(linked == std::set<std::string>{ra, rb});
  const auto records = cast.client.records(cast.admin);
  CHECK(records.size() == 2);
  check_device_matches_server(*a, records);
  check_device_matches_server(*b, records);
}

namespace {

// What one device last wrote, to check that nothing it sent was lost.
struct Written {
  std::map<std::pair<std::string, std::string>, json> fields;  // (record, field) -> last value
  std::set<std::string> deleted;
};

const char* const kIntFields[] = {"children_total", "births", "active_posyandu", "schools_total",
                                  "households_total"};
const char* const kBoolFields[] = {"has_forum_anak", "has_patbm", "has_smoke_free_area"};

}  // namespace

TEST_CASE("random offline edits on three devices converge with nothing lost", "[e2e][property]") {
  const int seeds = 10;
  for (int seed = 1; seed <= seeds; ++seed) {
    DYNAMIC_SECTION("seed " << seed) {
      Cast cast;
      std::mt19937 rng(static_cast<std::uint32_t>(seed));
      auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
      std::vector<std::unique_ptr<Device>> owned;
      owned.push_back(cast.device("a", "officer.bengkalis"));
      owned.push_back(cast.device("b", "officer.bengkalis2"));
      owned.push_back(cast.device("c", "officer.bengkalis"));  // the same officer on a second phone
      std::vector<Device*> devices;
      for (auto& d : owned) devices.push_back(d.get());
      std::vector<Written> written(devices.size());

      int next_village = 1;
      auto create = [&](std::size_t who) {
        const std::string code = village(kKecBengkalis, next_village++);
        const json fields = village_fields(code, {{"children_total", pick(500)}});
        const std::string id = devices[who]->create(code, fields);
        for (const auto& [k, v] : fields.items()) written[who].fields[{id, k}] = v;
      };
      for (int i = 0; i < 3; ++i) create(0);
      sync_until_quiet(devices);

      for (int step = 0; step < 50; ++step) {
        const std::size_t who = static_cast<std::size_t>(pick(static_cast<int>(devices.size())));
        Device& d = *devices[who];
        const int op = pick(20);
        if (op < 11) {
          std::vector<RecordView> live;
          for (auto& r : d.records())
            if (!r.deleted && !r.under_review) live.push_back(r);
          if (live.empty()) continue;
          const RecordView& r = live[static_cast<std::size_t>(pick(static_cast<int>(live.size())))];
          json fields = json::object();
          const int n = 1 + pick(3);
          for (int i = 0; i < n; ++i) {
            if (pick(3) == 0) {
              fields[kBoolFields[pick(3)]] = pick(2) == 1;
            } else {
              fields[kIntFields[pick(5)]] = pick(4);  // few values: equal writes happen too
            }
          }
          d.edit(r.id, fields);
          for (const auto& [k, v] : fields.items()) written[who].fields[{r.id, k}] = v;
        } else if (op < 13) {
          if (next_village < 90) create(who);
        } else if (op < 14) {
          std::vector<std::string> live;
          for (auto& r : d.records())
            if (!r.deleted && !r.dirty) live.push_back(r.id);
          if (live.empty()) continue;
          const std::string id =
              live[static_cast<std::size_t>(pick(static_cast<int>(live.size())))];
          REQUIRE(d.store().remove(id).ok());
          written[who].deleted.insert(id);
        } else {
          d.sync();
        }
      }
      sync_until_quiet(devices);

      // Convergence: every device shows exactly the server's data.
      const auto records = cast.client.records(cast.token_of("officer.bengkalis"));
      for (Device* d : devices) check_device_matches_server(*d, records);

      // Exactly once: each accepted change has one log entry.
      const std::vector<json> log = cast.client.pull_all(cast.admin, "e2e-admin-log");
      std::set<std::string> origins;
      std::map<std::pair<std::string, std::string>, std::vector<json>> ever;  // values ever set
      for (const auto& e : log) {
        const std::string origin = e.at("origin").get<std::string>();
        INFO("origin " << origin);
        CHECK(origins.insert(origin).second);
        for (const auto& [k, v] : e.at("fields").items())
          ever[{e.at("record").get<std::string>(), k}].push_back(v);
      }
      // No loss: the last value each device wrote was set on the server at some
      // point, or is a conflict candidate, or was rejected with a reason.
      const json conflicts = cast.conflicts();
      for (std::size_t i = 0; i < devices.size(); ++i) {
        auto rejected = devices[i]->store().rejected();
        REQUIRE(rejected.ok());
        for (const auto& [key, value] : written[i].fields) {
          const auto& [record, field] = key;
          if (written[i].deleted.count(record)) continue;
          INFO("device " << i << " wrote " << field << " = " << value.dump() << " on " << record);
          bool found = false;
          for (const auto& v : ever[key]) found = found || values_equal(v, value);
          for (const auto& c : conflicts) {
            if (c.at("record") != record) continue;
            for (const auto& cand : c.at("candidates")) {
              const json& cv = cand.at("value");
              if (c.at("kind") == "field" && c.at("field") == field)
                found = found || values_equal(cv, value);
              if (c.at("kind") == "delete" && cv.is_object() && cv.contains(field))
                found = found || values_equal(cv.at(field), value);
            }
          }
          for (const auto& r : *rejected)
            if (r.change.record == record && r.change.fields.contains(field))
              found = found || values_equal(r.change.fields.at(field), value);
          CHECK(found);
        }
        for (const auto& record : written[i].deleted) {
          INFO("device " << i << " deleted " << record);
          bool found = false;
          for (const auto& e : log)
            if (e.at("record") == record && e.at("op") == "delete") found = true;
          for (const auto& c : conflicts)
            if (c.at("record") == record && c.at("kind") == "delete") found = true;
          CHECK(found);
        }
      }
    }
  }
}

TEST_CASE("echo false leaves out the entries of the request's own changes, and only those",
          "[e2e][pull][echo]") {
  Cast cast;
  const std::string token = cast.token_of("officer.bengkalis");
  const std::string v1 = village(kKecBengkalis, 1), v2 = village(kKecBengkalis, 2),
                    v3 = village(kKecBengkalis, 3), v4 = village(kKecBengkalis, 4);
  const std::string r1 = new_uuid_v7(1), r2 = new_uuid_v7(2), r3 = new_uuid_v7(3),
                    r4 = new_uuid_v7(4);
  auto seqs = [](const json& answer) {
    std::vector<std::int64_t> out;
    for (const auto& e : answer.at("changes")) out.push_back(e.at("seq").get<std::int64_t>());
    return out;
  };

  // Device A pushes two changes without echo: its answer has their results only.
  const json first = {{"device_id", "echo-a"},
                      {"changes",
                       {raw_change("echo-a", 1, r1, v1, village_fields(v1)),
                        raw_change("echo-a", 2, r2, v2, village_fields(v2))}},
                      {"since", 0},
                      {"echo", false}};
  json a1 = cast.client.post("/v1/sync", first, token);
  REQUIRE(a1.at("results").size() == 2);
  CHECK(a1.at("results")[0].at("seq") == 1);
  CHECK(a1.at("results")[1].at("seq") == 2);
  CHECK(a1.at("changes").empty());
  CHECK(a1.at("cursor") == 2);
  CHECK(a1.at("more") == false);

  // Device B pushes one with the default: every entry, its own included.
  json b1 = cast.client.post("/v1/sync",
                             {{"device_id", "echo-b"},
                              {"changes", {raw_change("echo-b", 1, r3, v3, village_fields(v3))}},
                              {"since", 0}},
                             token);
  CHECK(seqs(b1) == std::vector<std::int64_t>{1, 2, 3});

  const json third = raw_change("echo-a", 3, r4, v4, village_fields(v4));
  // A again, from 0, one page of 2: A's earlier entries are not this request's,
  // so they come; its new change's entry (4) does not, and B's (3) is on the next page.
  json a2 = cast.client.post(
      "/v1/sync",
      {{"device_id", "echo-a"}, {"changes", {third}}, {"since", 0}, {"limit", 2}, {"echo", false}},
      token);
  CHECK(a2.at("results")[0].at("seq") == 4);
  CHECK(seqs(a2) == std::vector<std::int64_t>{1, 2});
  CHECK(a2.at("more") == true);
  CHECK(a2.at("cursor") == 2);
  json a3 = cast.client.post(
      "/v1/sync", {{"device_id", "echo-a"}, {"since", 2}, {"limit", 2}, {"echo", false}}, token);
  CHECK(seqs(a3) == std::vector<std::int64_t>{3, 4});  // no changes sent: nothing left out
  CHECK(a3.at("more") == false);

  // The replayed change again: its entry (4) is left out too. A full page says
  // more; the next page holds only the left-out entry, is empty, and its cursor
  // passes it.
  json a4 = cast.client.post(
      "/v1/sync",
      {{"device_id", "echo-a"}, {"changes", {third}}, {"since", 2}, {"limit", 1}, {"echo", false}},
      token);
  CHECK(a4.at("results")[0].at("replayed") == true);
  CHECK(seqs(a4) == std::vector<std::int64_t>{3});
  CHECK(a4.at("more") == true);
  json a5 = cast.client.post(
      "/v1/sync",
      {{"device_id", "echo-a"}, {"changes", {third}}, {"since", 3}, {"limit", 1}, {"echo", false}},
      token);
  CHECK(seqs(a5).empty());  // 4 is the replayed change's own entry
  CHECK(a5.at("cursor") == 4);
  CHECK(a5.at("more") == false);

  // The replay of the first request: answered with the first results, and the
  // log (B's entry and A's third change) without the replayed changes' entries.
  json replay = cast.client.post("/v1/sync", first, token);
  CHECK(replay.at("results")[0].at("replayed") == true);
  CHECK(replay.at("results")[1].at("seq") == 2);
  CHECK(seqs(replay) == std::vector<std::int64_t>{3, 4});

  // Not a boolean: the request is refused whole, and nothing is stored.
  json bad = cast.client.post(
      "/v1/sync",
      {{"device_id", "echo-c"},
       {"changes", {raw_change("echo-c", 1, new_uuid_v7(5), v1, village_fields(v1))}},
       {"echo", "no"}},
      token, 400);
  CHECK(bad.at("error").at("code") == "bad_request");
  CHECK(cast.client.pull_all(cast.admin, "e2e-admin-log").size() == 4);
}
