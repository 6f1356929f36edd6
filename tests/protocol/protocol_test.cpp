// Wire messages: decoding of changes and sync requests, round trips of results
// and log entries.
#include <catch2/catch.hpp>
#include <limits>

#include "fieldsync/protocol.hpp"

using namespace fieldsync;

namespace {

json good_change() {
  return json::parse(R"({"id": "dev-1:17", "record": "0193a1c2-0000-7000-8000-000000000001",
    "form": "kla-desa", "form_version": 1, "scope": "14.03.01.2001", "op": "upsert",
    "fields": {"children": 412, "has_forum_anak": true},
    "base": {"children": 0, "has_forum_anak": 35, "": 35},
    "hlc": "2026-11-28T09:14:03.120Z/0003", "future_member": {"ignored": true}})");
}

}  // namespace

TEST_CASE("a well-formed change decodes and re-encodes", "[protocol][wire]") {
  auto c = decode_change(good_change());
  REQUIRE(c);
  CHECK(c->id == "dev-1:17");
  CHECK(c->form_version == 1);
  CHECK(c->base.at("") == 35);
  CHECK(c->fields["children"] == 412);
  auto again = decode_change(c->to_json());
  REQUIRE(again);
  CHECK(*again == *c);
}

TEST_CASE("a malformed change is refused naming the member", "[protocol][wire]") {
  struct Case {
    const char* member;
    json value;  // null = remove the member
    const char* field;
  };
  const Case cases[] = {
      {"id", "no-counter", "id"},
      {"record", "not-a-uuid", "record"},
      {"record", nullptr, "record"},
      {"form", 7, "form"},
      {"form_version", 0, "form_version"},
      {"form_version", "1", "form_version"},
      {"scope", "14.03.x", "scope"},
      {"op", "merge", "op"},
      {"op", nullptr, "op"},
      {"fields", json::array(), "fields"},
      {"base", json{{"children", -1}}, "base.children"},
      {"base", json{{"children", 1.5}}, "base.children"},
      {"base", 3, "base"},
      {"hlc", "yesterday", "hlc"},
      {"hlc", nullptr, "hlc"},
  };
  for (const auto& c : cases) {
    json j = good_change();
    if (c.value.is_null())
      j.erase(c.member);
    else
      j[c.member] = c.value;
    INFO(j.dump());
    auto r = decode_change(j);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::validation);
    CHECK(r.error().field == c.field);
  }
  json del = good_change();
  del["op"] = "delete";
  auto r = decode_change(del);
  REQUIRE_FALSE(r);
  CHECK(r.error().field == "fields");
  del["fields"] = json::object();
  CHECK(decode_change(del));
}

TEST_CASE("sync request shape checks", "[protocol][wire]") {
  auto ok = decode_sync_request_shape(json{{"device_id", "dev-1"}});
  REQUIRE(ok);
  CHECK(ok->since == 0);
  CHECK(ok->limit == kDefaultPullLimit);
  CHECK(ok->raw_changes.empty());
  const json bad[] = {
      json::array(),
      json{{"changes", json::array()}},
      json{{"device_id", 5}},
      json{{"device_id", "dev 1"}},
      json{{"device_id", "dev-1"}, {"changes", json::object()}},
      json{{"device_id", "dev-1"}, {"changes", json::array({1})}},
      json{{"device_id", "dev-1"}, {"changes", json::array({json{{"id", 3}}})}},
      json{{"device_id", "dev-1"}, {"since", -1}},
      json{{"device_id", "dev-1"}, {"since", 1.5}},
      json{{"device_id", "dev-1"}, {"limit", "10"}},
      json{{"device_id", "dev-1"}, {"echo", "no"}},
      json{{"device_id", "dev-1"}, {"echo", 0}},
      json{{"device_id", "dev-1"}, {"omit_own_through", -1}},
      json{{"device_id", "dev-1"}, {"omit_own_through", "7"}},
      json{{"device_id", "dev-1"}, {"omit_own_through", 2.5}},
  };
  for (const auto& b : bad) {
    INFO(b.dump());
    auto r = decode_sync_request_shape(b);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::invalid_argument);
  }
  // A change that is an object with an id passes the shape check even when the
  // rest is wrong: that change alone is rejected later.
  auto lenient = decode_sync_request_shape(
      json{{"device_id", "dev-1"}, {"changes", json::array({json{{"id", "x"}}})}, {"since", 5}});
  REQUIRE(lenient);
  CHECK(lenient->raw_changes.size() == 1);
  CHECK(lenient->since == 5);
  CHECK(lenient->echo);

  // Addition D: "echo" false, read from a body whose changes are moved out.
  json body = {{"device_id", "dev-1"},
               {"changes", json::array({json{{"id", "dev-1:1"}, {"fields", {{"a", 1}}}}})},
               {"echo", false}};
  auto moved = decode_sync_request_shape(std::move(body));
  REQUIRE(moved);
  CHECK_FALSE(moved->echo);
  REQUIRE(moved->raw_changes.size() == 1);
  CHECK(moved->raw_changes[0] == json{{"id", "dev-1:1"}, {"fields", {{"a", 1}}}});
  // Encoding leaves "echo" out unless it is false, as servers before D expect.
  CHECK_FALSE(SyncRequest::encode("dev-1", {}, 0, 10).contains("echo"));
  CHECK(SyncRequest::encode("dev-1", {}, 0, 10, false).at("echo") == false);

  // Addition F: "omit_own_through", written only when above 0.
  CHECK(lenient->omit_own_through == 0);
  auto omitting = decode_sync_request_shape(json{{"device_id", "dev-1"}, {"omit_own_through", 41}});
  REQUIRE(omitting);
  CHECK(omitting->omit_own_through == 41);
  CHECK_FALSE(SyncRequest::encode("dev-1", {}, 0, 10, false, true).contains("omit_own_through"));
  CHECK(SyncRequest::encode("dev-1", {}, 0, 10, false, true, 41).at("omit_own_through") == 41);
  CHECK(json::parse(SyncRequest::encode_text("dev-1", "[]", 0, 10, false, true, 41)) ==
        SyncRequest::encode("dev-1", {}, 0, 10, false, true, 41));
}

TEST_CASE("a request encoded as text in two steps is the request encode() builds",
          "[protocol][wire]") {
  Change upsert;
  upsert.id = "dev-1:7";
  upsert.record = "0193a0b0-0000-7000-8000-000000000001";
  upsert.op = "upsert";
  upsert.form = "kla";
  upsert.form_version = 2;
  upsert.scope = "14.03.01";
  upsert.hlc = "000001234567890-0000-dev-1";
  upsert.fields = {{"note", "a \"quoted\" line\nand another"}, {"count", 3}, {"flag", nullptr}};
  upsert.base = {{"", 0}, {"count", 12}};
  Change del = upsert;
  del.id = "dev-1:8";
  del.op = "delete";
  del.fields = json::object();
  for (const std::vector<Change>& changes :
       {std::vector<Change>{}, std::vector<Change>{upsert}, std::vector<Change>{upsert, del}}) {
    for (bool echo : {true, false}) {
      for (bool compact : {true, false}) {
        const std::string text = SyncRequest::encode_text(
            "dev-1", SyncRequest::encode_changes(changes), 41, 500, echo, compact);
        const json parsed = json::parse(text);
        CHECK(parsed == SyncRequest::encode("dev-1", changes, 41, 500, echo, compact));
        auto decoded = decode_sync_request_shape(parsed);
        REQUIRE(decoded);
        CHECK(decoded->raw_changes.size() == changes.size());
        CHECK(decoded->since == 41);
      }
    }
    // The changes array with each change's fields given as text, as a device's
    // outbox stores them (here spaced differently from what dump() writes).
    std::vector<std::string> texts;
    for (const auto& c : changes) texts.push_back(c.fields.dump(1));
    CHECK(json::parse(SyncRequest::encode_changes(changes, texts)) ==
          json::parse(SyncRequest::encode_changes(changes)));
    if (!changes.empty()) {
      texts.pop_back();
      CHECK_THROWS_AS(SyncRequest::encode_changes(changes, texts), std::invalid_argument);
    }
  }
}

TEST_CASE("results, log entries and responses round-trip", "[protocol][wire]") {
  SyncResponse resp;
  ChangeResult applied{"dev:1", "applied", 2001, {{"a", 2001}, {"b", 35}}, {}, false, std::nullopt};
  ChangeResult conflict{"dev:2", "conflict",  2002, {{"b", 35}}, {{77, "field", "b", ""}},
                        false,   std::nullopt};
  ChangeResult rejected{
      "dev:3", "rejected", 0, {}, {}, false, RejectReason{"validation", "must be at least 0", "a"}};
  ChangeResult replayed = applied;
  replayed.replayed = true;
  resp.results = {applied, conflict, rejected, replayed};
  LogEntry e;
  e.seq = 2001;
  e.record = "0193a1c2-0000-7000-8000-000000000001";
  e.form = "kla-desa";
  e.form_version = 1;
  e.scope = "14.03.01.2001";
  e.op = "upsert";
  e.fields = {{"a", 1}};
  e.origin = "dev:1";
  e.author = "officer.bantan";
  e.device = "dev";
  e.hlc = "2026-11-28T09:14:03.120Z/0003";
  e.received_at = "2026-11-28T09:15:00.000Z";
  e.conflicts = {{77, "field", "b", "open"}};
  resp.changes = {e};
  resp.cursor = 2002;
  resp.more = true;
  json j = resp.to_json();
  CHECK(j["results"][2]["error"]["code"] == "validation");
  CHECK_FALSE(j["results"][2].contains("seq"));
  CHECK(j["results"][3]["replayed"] == true);
  auto back = SyncResponse::from_json(json::parse(j.dump()));
  REQUIRE(back);
  CHECK(back->results == resp.results);
  CHECK(back->changes == resp.changes);
  CHECK(back->cursor == 2002);
  CHECK(back->more);

  json broken = j;
  broken["results"][0]["status"] = "maybe";
  CHECK(SyncResponse::from_json(broken).error().code == Errc::protocol);
  broken = j;
  broken.erase("cursor");
  CHECK_FALSE(SyncResponse::from_json(broken));
}

TEST_CASE("wire error codes map to Errc", "[protocol][wire]") {
  CHECK(errc_from_wire_code("too_many_requests") == Errc::throttled);
  CHECK(errc_is_transient(errc_from_wire_code("unavailable")));
  CHECK_FALSE(errc_is_transient(errc_from_wire_code("forbidden")));
  // A revoked device is refused, not a protocol mismatch: it must not retry.
  CHECK(errc_from_wire_code("device_revoked") == Errc::forbidden);
  CHECK(error_body("validation", "bad", "x")["error"]["field"] == "x");
}

TEST_CASE("append_dump writes what dump() writes", "[protocol][wire]") {
  const std::vector<json> values = {
      json(0),
      json(-1),
      json(412),
      json(std::numeric_limits<std::int64_t>::min()),
      json(std::numeric_limits<std::int64_t>::max()),
      json(std::numeric_limits<std::uint64_t>::max()),
      json::parse("18446744073709551615"),
      json::parse("-9223372036854775808"),
      json(true),
      json(false),
      json(nullptr),
      json(1.5),
      json(-0.0),
      json(1e300),
      json("plain text / with slash"),
      json("quote \" and backslash \\"),
      json("tab\tand newline\n and \x01"),
      json("Desa Bantan Air \u00e9 \xe2\x82\xac"),
      json(std::string("nul \0 inside", 12)),
      json("\x7f"),
      json::array({1, "two", nullptr}),
      json{{"lat", 1.25}, {"lon", 102.5}},
      json::object(),
      json::array(),
      json{{"k\"ey", {{"nested", json::array({json::object(), true, -3, "\u00e9"})}}}, {"a", 0}},
      json::parse(R"({"children_total": 412, "has_forum_anak": true, "nama": "Bantan \"Air\"",
                      "choices": ["a", "b"], "loc": {"lat": 1.4, "lon": 102.1}, "x": null})"),
  };
  for (const auto& v : values) {
    INFO(v.dump());
    std::string out = "x";
    append_dump(out, v);
    CHECK(out == "x" + v.dump());
    if (v.is_string()) {
      std::string s;
      append_dump_string(s, v.get<std::string>());
      CHECK(s == v.dump());
    }
  }
  std::string bad = "y";
  CHECK_THROWS_AS(append_dump_string(bad, "\xff\xfe"), json::type_error);  // as dump() does
}

TEST_CASE("append_paired_members writes what pairing the parsed object writes",
          "[protocol][wire]") {
  // The reference: parse, pair each member with its number, append_dump.
  auto paired = [](const json& object, const std::function<std::int64_t(const std::string&)>& n) {
    std::string out = "{";
    for (const auto& [name, value] : object.items()) {
      if (n(name) <= 0) continue;
      if (out.size() > 1) out += ',';
      append_dump_string(out, name);
      out += ":[";
      append_dump(out, value);
      out += "," + std::to_string(n(name)) + "]";
    }
    return out + "}";
  };
  const std::vector<json> objects = {
      json::object(),
      json{{"a", 1}},
      json::parse(R"({"children_total": 412, "has_forum_anak": true, "nama": "Bantan \"Air\"",
                      "choices": ["a", "b", [], {}], "loc": {"lat": 1.4, "lon": 102.1,
                      "deep": {"x": [1, [2, [3, {"y": null}]]]}}, "x": null, "z": -0.0})"),
      json{{"k\"ey", {{"nested", json::array({json::object(), true, -3, "\u00e9"})}}},
           {"skip me", json::array({1, json{{"a", "b"}}})},
           {"big", std::numeric_limits<std::uint64_t>::max()},
           {"small", std::numeric_limits<std::int64_t>::min()},
           {"ctl", std::string("nul \0 and \x01", 11)},
           {"f", 1e300}},
      json{{"skip me", "only a skipped member"}},
      json{{"skip me", json::object()}, {"after", 2}},
  };
  const std::vector<std::function<std::int64_t(const std::string&)>> numbers = {
      [](const std::string&) { return std::int64_t{7}; },
      [](const std::string& name) { return name == "skip me" ? std::int64_t{0} : std::int64_t{9}; },
      [](const std::string& name) { return static_cast<std::int64_t>(name.size()) - 2; },
  };
  for (const auto& object : objects)
    for (const auto& number : numbers) {
      const std::string text = object.dump();
      INFO(text);
      std::string out = "prefix";
      append_paired_members(out, text, number);
      CHECK(out == "prefix" + paired(object, number));
      CHECK(json::parse(out.substr(6)).is_object());
    }
  // Not one object: refused, and nothing is appended.
  for (const char* bad : {"[]", "1", "\"s\"", "{", "{\"a\":1}}", "{\"a\":1} {}", "{\"a\":}", "",
                          "{\"a\":\"\xff\"}", "null"}) {
    INFO(bad);
    std::string out = "kept";
    CHECK_THROWS_AS(append_paired_members(out, bad, numbers[0]), std::invalid_argument);
    CHECK(out == "kept");
  }
}
