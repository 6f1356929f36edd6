// The field-day demo (tools/demo) against the real server initialised with
// `init --demo`, as scripts/demo.sh runs it: it must end by itself, report
// convergence and the open conflict, and exit 0.
#ifdef FIELDSYNC_HAVE_DEMO

#include <fstream>
#include <sstream>

#include <catch2/catch.hpp>

#include "e2e_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;

TEST_CASE("fieldsync-demo runs the field day against a demo server and converges", "[e2e][demo]") {
  ServerOptions options;  // no users: init --demo makes them
  auto server = std::make_unique<ServerProcess>(options);
  auto init = server->cli({"init", "--demo"});
  REQUIRE(init.ok());
  INFO(init->err);
  REQUIRE(init->exit_code == 0);
  const std::string users = server->dir() + "/users.jsonl";
  {
    std::ofstream out(users);
    out << init->out;
  }
  auto started = server->start();
  if (!started) FAIL(started.error().to_string());

  TempDir dir("fieldsync-demo");
  const std::string demo = std::string(FIELDSYNC_BINARY_DIR) + "/tools/demo/fieldsync-demo";
  auto run =
      run_command({demo, "--server", server->base_url(), "--users", users, "--dir", dir.path()}, {},
                  std::chrono::seconds(300));
  REQUIRE(run.ok());
  INFO(run->out << run->err);
  CHECK(run->exit_code == 0);
  CHECK(run->out.find("hold exactly the server's data") != std::string::npos);
  CHECK(run->out.find("DIFFERENT") == std::string::npos);
  CHECK(run->out.find("marked for review") != std::string::npos);

  // The server agrees: one open field conflict, the one the demo staged.
  std::string admin, admin_password;
  std::istringstream lines(init->out);
  for (std::string line; std::getline(lines, line);) {
    const json u = json::parse(line);
    if (u.at("role") == "admin") {
      admin = u.at("username").get<std::string>();
      admin_password = u.at("password").get<std::string>();
    }
  }
  REQUIRE_FALSE(admin_password.empty());
  Client client(server->base_url());
  const json open =
      client.get("/v1/conflicts?status=open", client.login(admin, admin_password, "check"));
  REQUIRE(open.at("conflicts").size() == 1);
  CHECK(open.at("conflicts")[0].at("kind") == "field");
  CHECK(open.at("conflicts")[0].at("field") == "children_with_birth_certificate");
}

#endif  // FIELDSYNC_HAVE_DEMO
