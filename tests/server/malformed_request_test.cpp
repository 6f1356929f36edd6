// Malformed requests: each gets the right status and error code, and none of them
// changes anything in the store (protocol.md "Errors": an error answer changes
// nothing). Most bodies carry a valid change, so a server that let the request
// through would leave a trace.
#include <catch2/catch.hpp>

#include "server_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::server;
using namespace fieldsync::server::test;

namespace {

json valid_change() {
  return change("dev-a:1", record_id(1), {{"code", "k"}, {"period", "2026"}});
}

std::string with_change(json body) {
  body["changes"] = json::array({valid_change()});
  return body.dump();
}

std::string nested(int depth) {
  return std::string(static_cast<std::size_t>(depth), '[') +
         std::string(static_cast<std::size_t>(depth), ']');
}

}  // namespace

TEST_CASE("malformed requests get their status and code and change nothing",
          "[server][malformed]") {
  ServerFixture f;
  f.add_user("officer.bantan", "officer", {"14.03.02"});
  const std::string token = f.login("officer.bantan", "secret-password", "dev-a");
  const auto before = f.stats();
  const Headers json_type = {{"Content-Type", "application/json"}};

  struct Case {
    const char* name;
    std::string method;
    std::string target;
    std::string body;
    Headers headers;
    bool with_token;
    int status;
    const char* code;
  };
  std::vector<json> too_many(1001, valid_change());
  for (std::size_t i = 0; i < too_many.size(); ++i)
    too_many[i]["id"] = "dev-a:" + std::to_string(i + 1);

  const std::vector<Case> cases = {
      {"bad JSON", "POST", "/v1/sync", R"({"device_id": "dev-a", "changes": [)", json_type, true,
       400, "bad_request"},
      {"NaN is not JSON", "POST", "/v1/sync", R"({"device_id": "dev-a", "since": NaN})", json_type,
       true, 400, "bad_request"},
      {"invalid UTF-8", "POST", "/v1/sync", "{\"device_id\": \"dev-\xff\"}", json_type, true, 400,
       "bad_request"},
      {"empty body", "POST", "/v1/sync", "", json_type, true, 400, "bad_request"},
      {"nesting 65 deep", "POST", "/v1/sync",
       R"({"device_id": "dev-a", "changes": [], "x": )" + nested(64) + "}", json_type, true, 400,
       "bad_request"},
      {"nesting a million deep", "POST", "/v1/sync", nested(1'000'000), json_type, true, 400,
       "bad_request"},
      {"body not an object", "POST", "/v1/sync", json::array({valid_change()}).dump(), json_type,
       true, 400, "bad_request"},
      {"device_id a number", "POST", "/v1/sync", with_change({{"device_id", 7}}), json_type, true,
       400, "bad_request"},
      {"missing device_id", "POST", "/v1/sync", with_change(json::object()), json_type, true, 400,
       "bad_request"},
      {"malformed device_id", "POST", "/v1/sync", with_change({{"device_id", "dev a/1"}}),
       json_type, true, 400, "bad_request"},
      {"changes not an array", "POST", "/v1/sync",
       json{{"device_id", "dev-a"}, {"changes", valid_change()}}.dump(), json_type, true, 400,
       "bad_request"},
      {"a change not an object", "POST", "/v1/sync",
       json{{"device_id", "dev-a"}, {"changes", json::array({valid_change(), "dev-a:2"})}}.dump(),
       json_type, true, 400, "bad_request"},
      {"a change without a string id", "POST", "/v1/sync",
       json{{"device_id", "dev-a"}, {"changes", json::array({valid_change(), json{{"id", 2}}})}}
           .dump(),
       json_type, true, 400, "bad_request"},
      {"since negative", "POST", "/v1/sync", with_change({{"device_id", "dev-a"}, {"since", -1}}),
       json_type, true, 400, "bad_request"},
      {"since a string", "POST", "/v1/sync", with_change({{"device_id", "dev-a"}, {"since", "0"}}),
       json_type, true, 400, "bad_request"},
      {"limit a fraction", "POST", "/v1/sync",
       with_change({{"device_id", "dev-a"}, {"limit", 1.5}}), json_type, true, 400, "bad_request"},
      {"too many changes", "POST", "/v1/sync",
       json{{"device_id", "dev-a"}, {"changes", too_many}}.dump(), json_type, true, 413,
       "payload_too_large"},
      {"wrong content type",
       "POST",
       "/v1/sync",
       with_change({{"device_id", "dev-a"}}),
       {{"Content-Type", "text/plain"}},
       true,
       415,
       "unsupported_media_type"},
      {"another charset",
       "POST",
       "/v1/sync",
       with_change({{"device_id", "dev-a"}}),
       {{"Content-Type", "application/json; charset=latin1"}},
       true,
       415,
       "unsupported_media_type"},
      {"no content type",
       "POST",
       "/v1/sync",
       with_change({{"device_id", "dev-a"}}),
       {{"X-Other", "1"}},
       true,
       415,
       "unsupported_media_type"},
      {"a content encoding not taken",
       "POST",
       "/v1/sync",
       with_change({{"device_id", "dev-a"}}),
       {{"Content-Type", "application/json"}, {"Content-Encoding", "gzip"}},
       true,
       415,
       "unsupported_media_type"},
      {"no token", "POST", "/v1/sync", with_change({{"device_id", "dev-a"}}), json_type, false, 401,
       "unauthorized"},
      {"unknown path", "POST", "/v1/synchronise", with_change({{"device_id", "dev-a"}}), json_type,
       true, 404, "not_found"},
      {"unknown version prefix", "POST", "/v2/sync", with_change({{"device_id", "dev-a"}}),
       json_type, true, 404, "not_found"},
      {"root", "GET", "/", "", {}, true, 404, "not_found"},
      {"wrong method on sync", "GET", "/v1/sync", "", {}, true, 405, "method_not_allowed"},
      {"wrong method on a form",
       "DELETE",
       "/v1/forms/survey",
       "",
       {},
       true,
       405,
       "method_not_allowed"},
      {"wrong method on login", "GET", "/v1/login", "", {}, false, 405, "method_not_allowed"},
      {"a target that is not a path",
       "GET",
       "http://example.com/v1/forms",
       "",
       {},
       true,
       400,
       "bad_request"},
      {"login without a user name", "POST", "/v1/login", R"({"password": "x"})", json_type, false,
       400, "bad_request"},
      {"login with a number as password", "POST", "/v1/login",
       R"({"username": "officer.bantan", "password": 1})", json_type, false, 400, "bad_request"},
      {"a form version that is not a number",
       "GET",
       "/v1/forms/survey?version=two",
       "",
       {},
       true,
       400,
       "bad_request"},
  };

  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.name) {
      Request req;
      req.method = c.method;
      req.target = c.target;
      req.body = c.body;
      req.headers = c.headers;
      req.remote_address = "192.0.2.9";
      if (c.with_token) req.headers.emplace_back("Authorization", "Bearer " + token);
      Response res = f.router->handle_request(req);
      INFO(res.body.substr(0, 300));
      CHECK(res.status == c.status);
      auto body = json::parse(res.body, nullptr, false);
      REQUIRE(body.is_object());
      CHECK(body["error"]["code"] == c.code);
      CHECK(body["error"]["message"].is_string());
      CHECK(res.header("Content-Type") == "application/json");
      if (c.status == 413) CHECK(body["error"]["limit"] == 1000);
      if (c.status == 405) CHECK(!res.header("Allow").empty());

      const auto after = f.stats();
      CHECK(after.head_seq == before.head_seq);
      CHECK(after.log_entries == before.log_entries);
      CHECK(after.records == before.records);
      CHECK(after.quarantined == before.quarantined);
      auto dev = f.store->device("dev-a");
      REQUIRE(dev.ok());
      CHECK(!dev->has_value());
    }
  }
}

TEST_CASE("unknown top-level members are ignored, up to 64 levels of nesting",
          "[server][malformed]") {
  ServerFixture f;
  f.add_user("officer.bantan", "officer", {"14.03.02"});
  const std::string token = f.login("officer.bantan", "secret-password", "dev-a");
  json body = {{"device_id", "dev-a"},
               {"changes", json::array({valid_change()})},
               {"compression", "none"},
               {"v2_hint", json::parse(nested(63))}};
  auto res = f.call(
      "POST", "/v1/sync", body.dump(), token,
      {{"content-type", "Application/JSON; charset=UTF-8"}, {"Content-Encoding", "identity"}});
  REQUIRE(res.status == 200);
  CHECK(json::parse(res.body)["results"][0]["status"] == "applied");
  CHECK(f.stats().records == 1);
}

TEST_CASE("healthz and metrics", "[server][ops]") {
  ServerFixture f;
  f.add_user("officer.bantan", "officer", {"14.03.02"});
  const std::string token = f.login("officer.bantan", "secret-password", "dev-a");
  auto health = f.call("GET", "/healthz");
  CHECK(health.status == 200);
  CHECK(json::parse(health.body) == json{{"status", "ok"}});
  f.sync(token, "dev-a",
         json::array({valid_change(), change("dev-a:2", record_id(2), {{"code", "k"}}),
                      change("dev-a:3", record_id(1), {{"count", 4}}, {{"count", 0}})}));
  f.call("GET", "/v1/nowhere", {}, token);
  auto m = f.call("GET", "/metrics");
  REQUIRE(m.status == 200);
  CHECK(m.header("Content-Type").rfind("text/plain; version=0.0.4", 0) == 0);
  const std::string& t = m.body;
  CHECK(t.find("fieldsync_http_requests_total{path=\"sync\",status=\"200\"} 1\n") !=
        std::string::npos);
  CHECK(t.find("fieldsync_http_requests_total{path=\"login\",status=\"200\"} 1\n") !=
        std::string::npos);
  CHECK(t.find("fieldsync_http_requests_total{path=\"unknown\",status=\"404\"} 1\n") !=
        std::string::npos);
  CHECK(t.find("fieldsync_http_request_duration_seconds_count{path=\"sync\"} 1\n") !=
        std::string::npos);
  CHECK(t.find("fieldsync_changes_total{result=\"applied\"} 2\n") != std::string::npos);
  CHECK(t.find("fieldsync_changes_total{result=\"rejected\"} 1\n") != std::string::npos);
  CHECK(t.find("fieldsync_changes_rejected_total{reason=\"validation\"} 1\n") != std::string::npos);
  CHECK(t.find("fieldsync_conflicts_opened_total 0\n") != std::string::npos);
  CHECK(t.find("fieldsync_log_head_seq 2\n") != std::string::npos);
  CHECK(f.call("POST", "/healthz").status == 405);
}
