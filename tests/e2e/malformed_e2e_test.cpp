// A table of malformed and refused requests sent through the raw transport to the
// real server: each gets its status and error code, and afterwards the server's
// data is exactly what it was (records and a fresh pull compared before/after).
#include <catch2/catch.hpp>

#include "e2e_fixture.hpp"
#include "fieldsync/hlc.hpp"
#include "fieldsync/ids.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;

namespace {

struct Case {
  std::string name;
  std::string method;
  std::string target;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool as_admin = false;
  int status = 0;
  std::string code;            // the error code of a non-2xx answer
  std::string rejected_code;   // a 200 sync answer whose one change is rejected with this code
  std::string rejected_field;  // and this field, when given
};

const std::vector<std::pair<std::string, std::string>> kJson = {
    {"Content-Type", "application/json"}};

std::string nested(int depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

json good_change(const std::string& device, std::int64_t counter) {
  return json{{"id", device + ":" + std::to_string(counter)},
              {"record", new_uuid_v7()},
              {"form", kKlaForm},
              {"scope", village(kKecBengkalis, 7)},
              {"op", "upsert"},
              {"fields", {{"desa_code", village(kKecBengkalis, 7)}, {"period", "2026"}}},
              {"base", json::object()},
              {"hlc", HlcClock().now().to_string()}};
}

std::string sync_with(json change) {
  json body = {{"device_id", "bad-device"}, {"changes", json::array()}, {"since", 0}};
  body["changes"].push_back(std::move(change));
  return body.dump();
}

Case refused(std::string name, std::string method, std::string target, std::string body,
             std::vector<std::pair<std::string, std::string>> headers, bool as_admin, int status,
             std::string code) {
  return Case{std::move(name),
              std::move(method),
              std::move(target),
              std::move(body),
              std::move(headers),
              as_admin,
              status,
              std::move(code),
              {},
              {}};
}

// A sync whose one change is rejected alone: 200, the change's result says why.
Case rejected(std::string name, json change, std::string code, std::string field = {}) {
  return Case{std::move(name), "POST",          "/v1/sync", sync_with(std::move(change)),
              kJson,           false,           200,        {},
              std::move(code), std::move(field)};
}

}  // namespace

TEST_CASE("malformed requests get their status and code and change nothing", "[e2e][malformed]") {
  auto server = start_server();
  TempDir dir("fieldsync-e2e");

  // Some data first, so "unchanged" means something.
  Device seed(dir.file("seed.db"), server->base_url());
  seed.login("officer.bengkalis", server->password("officer.bengkalis"));
  for (int i = 1; i <= 4; ++i) {
    const std::string code = village(kKecBengkalis, i);
    seed.create(code, {{"desa_code", code}, {"period", "2026"}, {"schools_total", i}});
  }
  seed.sync();

  Client client(server->base_url());
  const std::string officer =
      client.login("officer.bengkalis", server->password("officer.bengkalis"), "bad-device");
  const std::string admin = client.login("admin", server->password("admin"), "admin-device");
  auto snapshot = [&] {
    return std::make_pair(client.records(admin), client.pull_all(admin, "snapshot-device"));
  };
  const auto before = snapshot();
  REQUIRE(before.first.size() == 4);

  json bad_value = good_change("bad-device", 10);
  bad_value["fields"]["schools_total"] = -5;
  json wrong_type = good_change("bad-device", 11);
  wrong_type["fields"]["schools_total"] = "five";
  json unknown_field = good_change("bad-device", 12);
  unknown_field["fields"]["favourite_colour"] = "blue";
  json missing_required = good_change("bad-device", 13);
  missing_required["fields"].erase("period");
  json unknown_form = good_change("bad-device", 14);
  unknown_form["form"] = "no-such-form";
  json bad_op = good_change("bad-device", 15);
  bad_op["op"] = "merge";
  json bad_hlc = good_change("bad-device", 16);
  bad_hlc["hlc"] = "yesterday";
  json no_hlc = good_change("bad-device", 17);
  no_hlc.erase("hlc");

  const std::string big(9u * 1024 * 1024, ' ');
  json too_many = json{{"device_id", "bad-device"}, {"changes", json::array()}};
  for (int i = 1; i <= 1001; ++i) too_many["changes"].push_back(good_change("bad-device", 100 + i));

  const std::vector<Case> cases = {
      refused("not JSON", "POST", "/v1/sync", "{\"device_id\": ", kJson, false, 400, "bad_request"),
      refused("JSON with NaN", "POST", "/v1/sync", "{\"device_id\": \"d\", \"since\": NaN}", kJson,
              false, 400, "bad_request"),
      refused("body an array", "POST", "/v1/sync", "[]", kJson, false, 400, "bad_request"),
      refused("too deeply nested", "POST", "/v1/sync",
              "{\"device_id\": \"d\", \"x\": " + nested(10000) + "}", kJson, false, 400,
              "bad_request"),
      refused("no device_id", "POST", "/v1/sync", "{\"changes\": []}", kJson, false, 400,
              "bad_request"),
      refused("device_id a number", "POST", "/v1/sync", "{\"device_id\": 5}", kJson, false, 400,
              "bad_request"),
      refused("changes an object", "POST", "/v1/sync", "{\"device_id\": \"d\", \"changes\": {}}",
              kJson, false, 400, "bad_request"),
      refused("a change not an object", "POST", "/v1/sync",
              "{\"device_id\": \"d\", \"changes\": [1]}", kJson, false, 400, "bad_request"),
      refused("a change without id", "POST", "/v1/sync",
              "{\"device_id\": \"d\", \"changes\": [{\"op\": \"upsert\"}]}", kJson, false, 400,
              "bad_request"),
      refused("negative since", "POST", "/v1/sync", "{\"device_id\": \"d\", \"since\": -1}", kJson,
              false, 400, "bad_request"),
      refused("since a string", "POST", "/v1/sync", "{\"device_id\": \"d\", \"since\": \"0\"}",
              kJson, false, 400, "bad_request"),
      refused("fractional limit", "POST", "/v1/sync", "{\"device_id\": \"d\", \"limit\": 1.5}",
              kJson, false, 400, "bad_request"),
      refused("since beyond the end of the log", "POST", "/v1/sync",
              "{\"device_id\": \"d\", \"since\": 999999}", kJson, false, 409, "cursor_ahead"),
      refused("a body over the limit", "POST", "/v1/sync",
              "{\"device_id\": \"d\", \"pad\": \"" + big + "\"}", kJson, false, 413,
              "payload_too_large"),
      refused("more changes than the batch limit", "POST", "/v1/sync", too_many.dump(), kJson,
              false, 413, "payload_too_large"),
      refused("text/plain", "POST", "/v1/sync", "{\"device_id\": \"d\"}",
              {{"Content-Type", "text/plain"}}, false, 415, "unsupported_media_type"),
      refused("an unknown encoding", "POST", "/v1/sync", "{\"device_id\": \"d\"}",
              {{"Content-Type", "application/json"}, {"Content-Encoding", "br"}}, false, 415,
              "unsupported_media_type"),
      refused("unknown path", "GET", "/v1/nothing-here", "", {}, false, 404, "not_found"),
      refused("unknown form by GET", "GET", "/v1/forms/no-such-form", "", {}, false, 404,
              "not_found"),
      refused("GET on the sync endpoint", "GET", "/v1/sync", "", {}, false, 405,
              "method_not_allowed"),
      refused("DELETE on records", "DELETE", "/v1/records", "", {}, false, 405,
              "method_not_allowed"),
      refused("an invalid form definition", "PUT", "/v1/forms/broken",
              R"({"id": "broken", "fields": [{"name": "x", "type": "colour"}]})", kJson, true, 400,
              "validation"),
      refused("a form id that does not match the path", "PUT", "/v1/forms/one",
              R"({"id": "two", "fields": [{"name": "x", "type": "integer"}]})", kJson, true, 400,
              "validation"),
      refused("resolving a conflict that does not exist", "POST", "/v1/conflicts/424242/resolve",
              R"({"keep": "server"})", kJson, true, 404, "not_found"),
      rejected("a value below its minimum", bad_value, "validation", "schools_total"),
      rejected("a value of the wrong type", wrong_type, "validation", "schools_total"),
      rejected("a field the form lacks", unknown_field, "validation", "favourite_colour"),
      rejected("a new record without a required field", missing_required, "validation", "period"),
      rejected("an unknown form", unknown_form, "unknown_form"),
      rejected("a wrong op", bad_op, "validation", "op"),
      rejected("a malformed hlc", bad_hlc, "validation", "hlc"),
      rejected("no hlc", no_hlc, "validation", "hlc"),
  };

  for (const auto& c : cases) {
    INFO(c.name << ": " << c.method << " " << c.target);
    // A fresh client per case: the server may close the connection after an error.
    Client raw(server->base_url());
    auto res = raw.send(c.method, c.target, c.body, c.as_admin ? admin : officer, c.headers);
    if (!res) {
      FAIL_CHECK("no answer: " << res.error().to_string());
      continue;
    }
    INFO("answer " << res->status << " " << res->body.substr(0, 400));
    CHECK(res->status == c.status);
    json body = json::parse(res->body, nullptr, false);
    REQUIRE(body.is_object());
    if (!c.code.empty()) {
      REQUIRE(body.contains("error"));
      CHECK(body["error"].value("code", "") == c.code);
      CHECK(body["error"].value("message", "") != "");
    }
    if (!c.rejected_code.empty()) {
      auto decoded = SyncResponse::from_json(body);
      REQUIRE(decoded.ok());
      REQUIRE(decoded->results.size() == 1);
      CHECK(decoded->results[0].status == "rejected");
      REQUIRE(decoded->results[0].error.has_value());
      CHECK(decoded->results[0].error->code == c.rejected_code);
      if (!c.rejected_field.empty()) CHECK(decoded->results[0].error->field == c.rejected_field);
    }
  }

  const auto after = snapshot();
  CHECK(after.first == before.first);
  CHECK(after.second == before.second);
  // And a device pulling from scratch sees the same four records.
  Device fresh(dir.file("fresh.db"), server->base_url());
  fresh.login("officer.bengkalis2", server->password("officer.bengkalis2"));
  fresh.sync();
  check_device_matches_server(fresh, after.first);
}
