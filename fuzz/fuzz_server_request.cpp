// libFuzzer target: the server's request handling as a pure function
// (server/src/router.hpp, Router::handle_request) over a real SQLite store made
// once per process with the demo setup. The input is a plain-text request:
//   METHOD TARGET\n  Name: value\n ... \n\n  body
// where "$ADMIN" and "$OFFICER" in header values become valid tokens, so fuzzing
// reaches the authenticated endpoints. Checks: it never throws, the status is a
// real HTTP status, every error answer carries protocol.md's JSON error body, and
// every JSON answer is valid JSON.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <stdlib.h>

#include "demo_setup.hpp"
#include "fieldsync/protocol.hpp"
#include "fuzz_check.hpp"
#include "metrics.hpp"
#include "router.hpp"
#include "sqlite_store.hpp"
#include "writer.hpp"

using namespace fieldsync;
using namespace fieldsync::server;

namespace {

// A fixed clock keeps a crashing input reproducible (tokens, throttling windows).
constexpr std::int64_t kNowMs = 1796000000000;  // 2026-11-29

struct Fixture {
  std::string dir;
  std::unique_ptr<ServerStore> store;
  std::unique_ptr<Writer> writer;
  Metrics metrics;
  std::unique_ptr<Router> router;
  std::string admin_token;
  std::string officer_token;
};

std::string login(Router& router, const DemoUser& user) {
  Request req;
  req.method = "POST";
  req.target = "/v1/login";
  req.headers = {{"Content-Type", "application/json"}};
  req.body =
      json{{"username", user.username}, {"password", user.password}, {"device_id", "fuzz-device"}}
          .dump();
  req.remote_address = "127.0.0.1";
  Response res = router.handle_request(req);
  FUZZ_CHECK(res.status == 200);
  return json::parse(res.body).at("token").get<std::string>();
}

std::string& fixture_dir() {
  static std::string dir;
  return dir;
}

// Made on first use and kept for the process: the store is too slow to rebuild
// per input. Inputs therefore see the effects of earlier ones, as a server does.
Fixture& fixture() {
  static Fixture* f = [] {
    auto* fx = new Fixture;
    char tmpl[] = "/tmp/fieldsync-fuzz-server-XXXXXX";
    FUZZ_CHECK(::mkdtemp(tmpl) != nullptr);
    fx->dir = tmpl;
    fixture_dir() = fx->dir;
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(fixture_dir(), ignored);
    });
    SqliteStoreOptions options;
    options.path = fx->dir + "/server.db";
    options.durable = false;
    auto store = open_sqlite_store(options);
    FUZZ_CHECK(store.ok());
    fx->store = std::move(store).value();
    fx->writer = std::make_unique<Writer>(*fx->store);
    auto demo = init_demo(*fx->store, *fx->writer, embedded_kla_desa(),
                          embedded_bengkalis_regions(), kNowMs);
    FUZZ_CHECK(demo.ok());
    RouterOptions ro;
    ro.now_ms = [] { return kNowMs; };
    fx->router = std::make_unique<Router>(*fx->store, *fx->writer, fx->metrics, ro);
    for (const auto& u : demo->users) {
      if (u.role == "admin" && fx->admin_token.empty()) fx->admin_token = login(*fx->router, u);
      if (u.role == "officer" && fx->officer_token.empty())
        fx->officer_token = login(*fx->router, u);
    }
    FUZZ_CHECK(!fx->admin_token.empty() && !fx->officer_token.empty());
    return fx;
  }();
  return *f;
}

std::string substitute(std::string value, const Fixture& fx) {
  for (auto [placeholder, token] : {std::pair{std::string_view("$ADMIN"), &fx.admin_token},
                                    std::pair{std::string_view("$OFFICER"), &fx.officer_token}}) {
    for (auto at = value.find(placeholder); at != std::string::npos; at = value.find(placeholder))
      value.replace(at, placeholder.size(), *token);
  }
  return value;
}

Request parse_input(std::string_view in, const Fixture& fx) {
  Request req;
  req.remote_address = "127.0.0.1";
  auto take_line = [&in]() {
    auto nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
    return line;
  };
  std::string_view first = take_line();
  auto space = first.find(' ');
  req.method = std::string(first.substr(0, space));
  req.target =
      space == std::string_view::npos ? std::string() : std::string(first.substr(space + 1));
  while (!in.empty()) {
    std::string_view line = take_line();
    if (line.empty()) break;
    auto colon = line.find(':');
    std::string_view name = line.substr(0, colon);
    std::string_view value =
        colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    req.headers.emplace_back(std::string(name), substitute(std::string(value), fx));
  }
  req.body = std::string(in);
  return req;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Fixture& fx = fixture();
  Request req = parse_input(std::string_view(reinterpret_cast<const char*>(data), size), fx);
  Response res = fx.router->handle_request(req);
  FUZZ_CHECK(res.status >= 100 && res.status <= 599);
  bool is_json = res.header("Content-Type").rfind("application/json", 0) == 0;
  if (res.status >= 400) {
    FUZZ_CHECK(is_json);
    json body = json::parse(res.body, nullptr, false);
    FUZZ_CHECK(body.is_object());
    FUZZ_CHECK(body.contains("error") && body["error"].is_object());
    FUZZ_CHECK(body["error"].contains("code") && body["error"]["code"].is_string());
    FUZZ_CHECK(body["error"].contains("message") && body["error"]["message"].is_string());
    FUZZ_CHECK(res.status != 500);  // 500 is a bug by definition (protocol.md)
  } else if (is_json && !res.body.empty()) {
    FUZZ_CHECK(!json::parse(res.body, nullptr, false).is_discarded());
  }
  return 0;
}
