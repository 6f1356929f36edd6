// The server goes away under a device: a clean stop (SIGTERM) and a crash
// (SIGKILL), then a restart on the same database and address. The device's kept-
// alive connection is dead; its next sync must reconnect and lose nothing the
// server acknowledged.
#include <catch2/catch.hpp>

#include "e2e_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;

TEST_CASE("a device syncs on after the server restarts, with nothing acknowledged lost",
          "[e2e][restart]") {
  auto server = start_server();
  TempDir dir("fieldsync-e2e");
  Device device(dir.file("d.db"), server->base_url());
  device.login("officer.bengkalis", server->password("officer.bengkalis"));
  std::vector<std::string> ids;
  for (int i = 1; i <= 3; ++i) {
    const std::string code = village(kKecBengkalis, i);
    ids.push_back(device.create(code, {{"desa_code", code}, {"period", "2026"}, {"births", i}}));
  }
  CHECK(device.sync().applied == 3);
  const std::uint16_t port = server->port();

  SECTION("clean stop") {
    auto code = server->stop();
    REQUIRE(code.ok());
    CHECK(*code == 0);
  }
  SECTION("crash") {
    server->kill9();
  }

  // While the server is down the device keeps working offline, and a sync
  // attempt fails as a transient network error.
  device.edit(ids[0], {{"births", 40}});
  SyncOptions once = Device::quick_options();
  once.max_attempts = 1;
  auto down = device.try_sync(once);
  REQUIRE_FALSE(down.ok());
  CHECK(down.error().code == Errc::network);

  auto restarted = server->start(port);
  INFO(server->log());
  REQUIRE(restarted.ok());
  REQUIRE(server->port() == port);
  const SyncProgress p = device.sync();  // the same transport object as before
  CHECK(p.applied == 1);

  Client client(server->base_url());
  const auto records =
      client.records(client.login("admin", server->password("admin"), "admin-device"));
  REQUIRE(records.size() == 3);
  CHECK(server_value(records.at(ids[0]), "births") == 40);
  CHECK(server_value(records.at(ids[2]), "births") == 3);
  check_device_matches_server(device, records);
}
