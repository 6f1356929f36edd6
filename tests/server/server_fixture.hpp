// An in-process server for tests: a SQLite store in a temporary folder, the group
// commit writer, and the router called directly (no sockets), with a clock the
// test controls.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include <catch2/catch.hpp>

#include "fieldsync/hlc.hpp"

#include "auth.hpp"
#include "form_catalog.hpp"
#include "metrics.hpp"
#include "router.hpp"
#include "sqlite_store.hpp"
#include "writer.hpp"

namespace fieldsync::server::test {

// PBKDF2 iterations for test users: the real default is exercised by its own
// test; the rest only need logins to work quickly.
inline constexpr std::int64_t kTestIterations = 1000;
inline constexpr std::int64_t kStartMs = 1'795'000'000'000;  // 2026-11-18

// A folder removed at the end of the test.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    std::random_device rd;
    path = std::filesystem::temp_directory_path() /
           ("fieldsync-server-test-" + std::to_string(rd()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// Two versions of a small survey form: v2 drops `note` and adds `extra`.
inline json survey_form_v1() {
  return json::parse(R"({"id": "survey", "title": "Test survey", "key": ["code", "period"],
    "fields": [
      {"name": "code", "type": "text", "required": true},
      {"name": "period", "type": "text", "required": true},
      {"name": "count", "type": "integer", "min": 0, "max": 1000},
      {"name": "note", "type": "text", "max": 50},
      {"name": "flag", "type": "boolean"},
      {"name": "tags", "type": "select_multiple", "choices": ["a", "b", "c"]}]})");
}

inline json survey_form_v2() {
  json f = survey_form_v1();
  f["fields"].erase(3);
  f["fields"].push_back({{"name", "extra"}, {"type", "integer"}});
  return f;
}

struct ServerFixture {
  TempDir dir;
  std::unique_ptr<ServerStore> store;
  std::unique_ptr<Writer> writer;
  Metrics metrics;
  std::shared_ptr<std::atomic<std::int64_t>> clock =
      std::make_shared<std::atomic<std::int64_t>>(kStartMs);
  std::unique_ptr<Router> router;

  std::string db_path;

  // `path`: the store file; default a new file in `dir`.
  explicit ServerFixture(RouterOptions options = {}, bool with_form = true, std::string path = {}) {
    db_path = path.empty() ? (dir.path / "server.db").string() : path;
    SqliteStoreOptions so;
    so.path = db_path;
    so.durable = false;
    auto opened = open_sqlite_store(so);
    REQUIRE(opened.ok());
    store = std::move(opened).value();
    writer = std::make_unique<Writer>(*store);
    auto c = clock;
    options.now_ms = [c] { return c->load(); };
    router = std::make_unique<Router>(*store, *writer, metrics, options);
    if (with_form) {
      auto published = publish_form(*writer, survey_form_v1(), "", "test", kStartMs);
      REQUIRE(published.ok());
    }
  }
  ~ServerFixture() {
    router.reset();
    writer->stop();
  }

  void advance(std::chrono::milliseconds d) { *clock += d.count(); }

  void add_user(const std::string& name, const std::string& role, std::vector<std::string> scopes,
                const std::string& password = "secret-password") {
    auto r = put_user(*writer, UserSpec{name, role, std::move(scopes), password}, clock->load(),
                      kTestIterations);
    REQUIRE(r.ok());
  }

  Response call(const std::string& method, const std::string& target, const std::string& body = {},
                const std::string& token = {}, Headers headers = {}) {
    Request req;
    req.method = method;
    req.target = target;
    req.body = body;
    req.remote_address = "192.0.2.1";
    if (!body.empty() && headers.empty()) headers.emplace_back("Content-Type", "application/json");
    if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
    req.headers = std::move(headers);
    return router->handle_request(req);
  }

  std::string login(const std::string& user, const std::string& password = "secret-password",
                    const std::string& device = "dev-a") {
    auto res = call("POST", "/v1/login",
                    json{{"username", user}, {"password", password}, {"device_id", device}}.dump());
    REQUIRE(res.status == 200);
    return json::parse(res.body).at("token").get<std::string>();
  }

  // POST /v1/sync; returns the parsed answer and checks it is a 200.
  json sync(const std::string& token, const std::string& device, const json& changes,
            std::int64_t since = 0, std::int64_t limit = 500) {
    json body = {{"device_id", device}, {"changes", changes}, {"since", since}, {"limit", limit}};
    auto res = call("POST", "/v1/sync", body.dump(), token);
    INFO(res.body);
    REQUIRE(res.status == 200);
    return json::parse(res.body);
  }

  StoreStats stats() {
    auto s = store->stats();
    REQUIRE(s.ok());
    return *s;
  }

  // Every log entry (as an admin pull sees them).
  std::vector<LogEntry> log() {
    ScopeFilter all;
    all.all = true;
    auto page = store->pull(all, 0, 1'000'000);
    REQUIRE(page.ok());
    return page->entries;
  }
};

inline std::string hlc_at(std::int64_t ms, int counter = 0) {
  Hlc h{ms, static_cast<std::uint32_t>(counter)};
  return h.to_string();
}

// One change as a device sends it.
inline json change(const std::string& id, const std::string& record, json fields,
                   json base = json::object(), const std::string& scope = "14.03.02.2001",
                   const std::string& op = "upsert") {
  json c = {{"id", id}, {"record", record}, {"form", "survey"},          {"scope", scope},
            {"op", op}, {"base", base},     {"hlc", hlc_at(kStartMs, 1)}};
  if (op == "upsert") c["fields"] = std::move(fields);
  return c;
}

inline std::string record_id(int n) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "0193a1c2-0000-7000-8000-%012d", n);
  return buf;
}

}  // namespace fieldsync::server::test
