// Crash points (issue #5): the real server, built with FIELDSYNC_TEST_HOOKS, is
// started with FIELDSYNC_CRASH_AT=<point> and dies by SIGKILL at that point of a
// device's push (server/src/crash_points.hpp). It is then restarted WITHOUT the
// hook on the same database and the devices sync again. At every point: each
// change is applied exactly once (one log entry per change id), nothing is lost,
// the outboxes empty, the devices equal the server, and the device's receipts
// carry the seq the server logged. A crash after the commit, before the response,
// is answered on retry by replay, with the first result.
#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>

#include "e2e_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;

namespace {

std::string read_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("the server binary carries the crash-point hook only in a test-hook build",
          "[e2e][crash]") {
  REQUIRE(ServerProcess::binary_available());
  const std::string binary = read_binary(ServerProcess::binary_path());
  REQUIRE(binary.size() > 100000);
  const bool has_env = binary.find("FIELDSYNC_CRASH_AT") != std::string::npos;
  const bool has_point = binary.find("after_commit_before_response") != std::string::npos;
#if FIELDSYNC_E2E_SERVER_HOOKS
  CHECK(has_env);
  CHECK(has_point);
#else
  CHECK_FALSE(has_env);
  CHECK_FALSE(has_point);
#endif
}

#if FIELDSYNC_E2E_SERVER_HOOKS

namespace {

std::vector<std::string> outbox_ids(Device& d) {
  auto out = d.store().outbox();
  REQUIRE(out.ok());
  std::vector<std::string> ids;
  for (const auto& e : *out) ids.push_back(e.change.id);
  return ids;
}

// change id -> every seq of a log entry with that origin.
std::map<std::string, std::vector<std::int64_t>> log_by_origin(Client& admin,
                                                               const std::string& token) {
  std::map<std::string, std::vector<std::int64_t>> by;
  for (const auto& e : admin.pull_all(token, "crash-admin"))
    by[e.at("origin").get<std::string>()].push_back(e.at("seq").get<std::int64_t>());
  return by;
}

SyncOptions one_attempt() {
  SyncOptions o = Device::quick_options();
  o.max_attempts = 1;
  return o;
}

// Waits for the hooked server to die at `point` and checks it died there.
void expect_died_at(ServerProcess& server, const std::string& point) {
  auto code = server.wait_exit(std::chrono::seconds(30));
  INFO(server.log());
  REQUIRE(code.ok());
  CHECK(*code == 128 + 9);  // SIGKILL, as a crash
  CHECK(server.log().find("crash point " + point + " reached") != std::string::npos);
}

}  // namespace

TEST_CASE("a crash at each point of a push loses nothing and applies each change once",
          "[e2e][crash]") {
  struct Case {
    std::string spec;   // FIELDSYNC_CRASH_AT
    std::string point;  // its name
    bool committed;     // the push was durable when the server died
  };
  const Case c =
      GENERATE(Case{"after_log_insert", "after_log_insert", false},
               Case{"after_log_insert:3", "after_log_insert", false},
               Case{"before_commit", "before_commit", false},
               Case{"after_commit_before_response", "after_commit_before_response", true});
  INFO("FIELDSYNC_CRASH_AT=" << c.spec);

  auto server = start_server();
  const std::uint16_t port = server->port();
  TempDir dir("fieldsync-crash");
  Device device(dir.file("d.db"), server->base_url());
  device.login("officer.bengkalis", server->password("officer.bengkalis"));
  const std::string a =
      device.create(village(kKecBengkalis, 1),
                    {{"desa_code", village(kKecBengkalis, 1)}, {"period", "2026"}, {"births", 1}});
  REQUIRE(device.sync().applied == 1);

  // Unsynced: an edit of a synced record and two new records, one push.
  device.edit(a, {{"births", 11}});
  const std::string b =
      device.create(village(kKecBengkalis, 2),
                    {{"desa_code", village(kKecBengkalis, 2)}, {"period", "2026"}, {"births", 2}});
  const std::string d =
      device.create(village(kKecBengkalis, 3),
                    {{"desa_code", village(kKecBengkalis, 3)}, {"period", "2026"}, {"births", 3}});
  const std::vector<std::string> pending = outbox_ids(device);
  REQUIRE(pending.size() == 3);

  // The device's login happened on the hook-less server: the first write of the
  // hooked one is this push.
  REQUIRE(server->stop().ok());
  {
    auto hooked = server->start(port, {"FIELDSYNC_CRASH_AT=" + c.spec});
    INFO(server->log());
    REQUIRE(hooked.ok());
  }
  auto failed = device.try_sync(one_attempt());
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().code == Errc::network);
  expect_died_at(*server, c.point);
  // No answer reached the device: everything is still in its outbox.
  CHECK(outbox_ids(device) == pending);

  {
    auto plain = server->start(port);
    INFO(server->log());
    REQUIRE(plain.ok());
  }
  Client admin(server->base_url());
  const std::string admin_token = admin.login("admin", server->password("admin"), "crash-admin");

  // Before the device retries: the push is in the log wholly or not at all.
  {
    const auto by = log_by_origin(admin, admin_token);
    for (const auto& id : pending) {
      INFO("change " << id);
      CHECK(by.count(id) == (c.committed ? 1u : 0u));
    }
  }

  if (c.committed) {
    // The answer was lost: a retry of the same push is answered by replay with the
    // first result (the seq that was logged), and changes nothing.
    const auto before = log_by_origin(admin, admin_token);
    auto token = device.store().setting("token");
    REQUIRE(token.ok());
    REQUIRE(token->has_value());
    auto out = device.store().outbox();
    REQUIRE(out.ok());
    std::vector<Change> changes;
    for (const auto& e : *out) changes.push_back(e.change);
    const json body = SyncRequest::encode(device.store().device_id(), changes, 0, 0);
    const json answer = admin.post("/v1/sync", body, **token);
    REQUIRE(answer.at("results").size() == pending.size());
    for (std::size_t i = 0; i < pending.size(); ++i) {
      const json& r = answer.at("results").at(i);
      INFO(r.dump());
      CHECK(r.at("id") == pending[i]);
      CHECK(r.at("status") == "applied");
      CHECK(r.value("replayed", false));
      REQUIRE(before.count(pending[i]) == 1);
      CHECK(r.at("seq").get<std::int64_t>() == before.at(pending[i]).front());
    }
    CHECK(log_by_origin(admin, admin_token) == before);
  }

  // The device syncs again (a replay, or the first application).
  const SyncProgress p = device.sync();
  CHECK(p.applied == 3);
  CHECK(outbox_ids(device).empty());

  const auto by = log_by_origin(admin, admin_token);
  auto receipts = device.store().receipts();
  REQUIRE(receipts.ok());
  std::map<std::string, std::int64_t> receipt_seq;
  for (const auto& r : *receipts) receipt_seq[r.change_id] = r.seq;
  for (const auto& id : pending) {
    INFO("change " << id);
    REQUIRE(by.count(id) == 1);
    CHECK(by.at(id).size() == 1);  // exactly once
    REQUIRE(receipt_seq.count(id) == 1);
    CHECK(receipt_seq.at(id) == by.at(id).front());
  }

  const auto records = admin.records(admin_token);
  REQUIRE(records.size() == 3);
  CHECK(server_value(records.at(a), "births") == 11);
  CHECK(server_value(records.at(b), "births") == 2);
  CHECK(server_value(records.at(d), "births") == 3);
  check_device_matches_server(device, records);
}

TEST_CASE("a crash in the middle of a group commit loses nothing from any device", "[e2e][crash]") {
  auto server = start_server();
  const std::uint16_t port = server->port();
  TempDir dir("fieldsync-crash");
  const std::vector<std::pair<std::string, std::string>> officers = {
      {"officer.bengkalis", kKecBengkalis},
      {"officer.bengkalis2", kKecBengkalis},
      {"officer.bantan", kKecBantan},
      {"admin", kKecBantan}};
  std::vector<std::unique_ptr<Device>> devices;
  for (std::size_t i = 0; i < officers.size(); ++i) {
    devices.push_back(
        std::make_unique<Device>(dir.file("d" + std::to_string(i) + ".db"), server->base_url()));
    devices.back()->login(officers[i].first, server->password(officers[i].first));
  }
  REQUIRE(server->stop().ok());
  {
    auto hooked = server->start(port, {"FIELDSYNC_CRASH_AT=mid_batch"});
    INFO(server->log());
    REQUIRE(hooked.ok());
  }

  // Rounds of concurrent pushes (several changes each, so that one push is still
  // being merged when the others arrive and the writer groups them) until the
  // server dies in the middle of a batch. Bounded.
  std::set<std::string> all_changes;
  int village_no = 0;
  int rounds = 0;
  bool died = false;
  for (; rounds < 20 && !died; ++rounds) {
    for (std::size_t i = 0; i < devices.size(); ++i) {
      for (int k = 0; k < 10; ++k) {
        const std::string code = village(officers[i].second, ++village_no % 90 + 1);
        devices[i]->create(code, {{"desa_code", code},
                                  {"period", std::to_string(2000 + rounds)},
                                  {"births", village_no}});
      }
      for (const auto& id : outbox_ids(*devices[i])) all_changes.insert(id);
    }
    std::vector<std::thread> threads;
    for (auto& dev : devices) threads.emplace_back([&dev] { (void)dev->try_sync(one_attempt()); });
    for (auto& t : threads) t.join();
    died = server->wait_exit(std::chrono::milliseconds(500)).ok();
  }
  INFO("rounds: " << rounds);
  REQUIRE(died);
  CHECK(server->log().find("crash point mid_batch reached") != std::string::npos);

  {
    auto plain = server->start(port);
    INFO(server->log());
    REQUIRE(plain.ok());
  }
  std::vector<Device*> all;
  for (auto& dev : devices) all.push_back(dev.get());
  sync_until_quiet(all);

  Client admin(server->base_url());
  const std::string admin_token = admin.login("admin", server->password("admin"), "crash-admin");
  const auto by = log_by_origin(admin, admin_token);
  for (const auto& id : all_changes) {
    INFO("change " << id);
    REQUIRE(by.count(id) == 1);
    CHECK(by.at(id).size() == 1);
  }
  const auto records = admin.records(admin_token);
  CHECK(records.size() == all_changes.size());
  for (auto& dev : devices) {
    CHECK(outbox_ids(*dev).empty());
    Client own(server->base_url());
    auto token = dev->store().setting("token");
    REQUIRE(token.ok());
    REQUIRE(token->has_value());
    check_device_matches_server(*dev, own.records(**token));
  }
}

#endif  // FIELDSYNC_E2E_SERVER_HOOKS
