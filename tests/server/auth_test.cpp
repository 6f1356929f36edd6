// Login, tokens (expiry, revocation, logout), throttling and roles.
#include <catch2/catch.hpp>

#include "crypto.hpp"
#include "server_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::server;
using namespace fieldsync::server::test;

TEST_CASE("login answers a token, its expiry and the user", "[server][auth]") {
  ServerFixture f;
  f.add_user("officer.bantan", "officer", {"14.03.02"});
  auto res =
      f.call("POST", "/v1/login",
             R"({"username": "officer.bantan", "password": "secret-password", "device_id": "d1"})");
  REQUIRE(res.status == 200);
  auto body = json::parse(res.body);
  auto parsed = LoginResponse::from_json(body);
  REQUIRE(parsed.ok());
  CHECK(parsed->user.username == "officer.bantan");
  CHECK(parsed->user.role == "officer");
  CHECK(parsed->user.scopes == std::vector<std::string>{"14.03.02"});
  CHECK(parsed->token.size() >= 40);
  auto expires = parse_rfc3339_ms(parsed->expires_at);
  REQUIRE(expires.ok());
  CHECK(*expires == kStartMs + kDefaultTokenTtlMs);
  // Addition F: sync requests may leave out the device's own entries.
  CHECK(parsed->features == std::vector<std::string>{"omit_own"});

  SECTION("the token works and only its hash is stored") {
    CHECK(f.call("GET", "/v1/forms", {}, parsed->token).status == 200);
    auto by_hash = f.store->token(token_hash(parsed->token));
    REQUIRE(by_hash.ok());
    REQUIRE(by_hash->has_value());
    CHECK((*by_hash)->device_id == "d1");
    auto by_text = f.store->token(parsed->token);
    REQUIRE(by_text.ok());
    CHECK(!by_text->has_value());
  }
  SECTION("no token, a wrong token or a wrong scheme is 401") {
    CHECK(f.call("GET", "/v1/forms").status == 401);
    CHECK(f.call("GET", "/v1/forms", {}, parsed->token + "x").status == 401);
    CHECK(
        f.call("GET", "/v1/forms", {}, {}, {{"Authorization", "Basic " + parsed->token}}).status ==
        401);
    auto r = f.call("GET", "/v1/forms", {}, "not a token");
    CHECK(r.status == 401);
    CHECK(json::parse(r.body)["error"]["code"] == "unauthorized");
    CHECK(r.header("WWW-Authenticate") == "Bearer");
  }
}

TEST_CASE("wrong passwords and unknown users are 401 alike", "[server][auth]") {
  ServerFixture f;
  f.add_user("admin", "admin", {});
  auto wrong = f.call("POST", "/v1/login", R"({"username": "admin", "password": "nope"})");
  auto unknown = f.call("POST", "/v1/login", R"({"username": "ghost", "password": "nope"})");
  CHECK(wrong.status == 401);
  CHECK(unknown.status == 401);
  CHECK(json::parse(wrong.body) == json::parse(unknown.body));
}

TEST_CASE("passwords are PBKDF2-SHA256 with a random salt and stored parameters",
          "[server][auth]") {
  ServerFixture f;
  auto r = put_user(*f.writer, UserSpec{"officer.a", "officer", {"14.03.01"}, "pw-1"}, kStartMs);
  REQUIRE(r.ok());
  REQUIRE(
      put_user(*f.writer, UserSpec{"officer.b", "officer", {"14.03.01"}, "pw-1"}, kStartMs).ok());
  auto a = f.store->user("officer.a");
  auto b = f.store->user("officer.b");
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(a->has_value());
  const PasswordHash& h = (*a)->password;
  CHECK(h.algorithm == "pbkdf2-sha256");
  CHECK(h.iterations >= 100000);
  CHECK(h.salt.size() >= 16);
  CHECK(h.hash == pbkdf2_sha256("pw-1", h.salt, h.iterations, h.hash.size()));
  CHECK(h.salt != (*b)->password.salt);
  CHECK(h.hash != (*b)->password.hash);
  CHECK(verify_password("pw-1", h));
  CHECK(!verify_password("pw-2", h));
  CHECK(f.login("officer.a", "pw-1").size() > 0);
}

TEST_CASE("repeated failures are throttled per user name, known or not, with Retry-After",
          "[server][auth]") {
  ServerFixture f;
  f.add_user("officer.bantan", "officer", {"14.03.02"});
  const ThrottlePolicy policy;
  for (const std::string name : {"officer.bantan", "nobody.at.all"}) {
    DYNAMIC_SECTION("user " << name) {
      const std::string bad = json{{"username", name}, {"password", "wrong"}}.dump();
      for (std::int64_t i = 0; i < policy.user_max_failures; ++i)
        CHECK(f.call("POST", "/v1/login", bad).status == 401);
      auto throttled = f.call("POST", "/v1/login", bad);
      REQUIRE(throttled.status == 429);
      CHECK(json::parse(throttled.body)["error"]["code"] == "too_many_requests");
      const auto retry = std::stoll(throttled.header("Retry-After"));
      CHECK(retry == policy.first_block_ms / 1000);
      // Even the right password is refused while blocked: nothing can be probed.
      if (name == "officer.bantan") {
        CHECK(f.call("POST", "/v1/login",
                     R"({"username": "officer.bantan", "password": "secret-password"})")
                  .status == 429);
      }
      f.advance(std::chrono::seconds(retry));
      if (name == "officer.bantan") {
        CHECK(f.call("POST", "/v1/login",
                     R"({"username": "officer.bantan", "password": "secret-password"})")
                  .status == 200);
      } else {
        CHECK(f.call("POST", "/v1/login", bad).status == 401);
        auto again = f.call("POST", "/v1/login", bad);
        CHECK(again.status == 429);
        CHECK(std::stoll(again.header("Retry-After")) > retry);  // the block doubles
      }
    }
  }
}

TEST_CASE("failures from one address are throttled across user names", "[server][auth]") {
  ServerFixture f;
  f.add_user("officer.bantan", "officer", {"14.03.02"});
  const ThrottlePolicy policy;
  for (std::int64_t i = 0; i < policy.address_max_failures; ++i) {
    auto r = f.call("POST", "/v1/login",
                    json{{"username", "guess" + std::to_string(i)}, {"password", "x"}}.dump());
    CHECK(r.status == 401);
  }
  auto r = f.call("POST", "/v1/login",
                  R"({"username": "officer.bantan", "password": "secret-password"})");
  CHECK(r.status == 429);
  CHECK(!r.header("Retry-After").empty());
}

TEST_CASE("expired, revoked and logged-out tokens are 401", "[server][auth]") {
  RouterOptions options;
  options.auth.token_ttl_ms = 60'000;
  ServerFixture f(options);
  f.add_user("officer.bantan", "officer", {"14.03.02"});

  SECTION("expiry") {
    auto token = f.login("officer.bantan");
    f.advance(std::chrono::seconds(59));
    CHECK(f.call("GET", "/v1/forms", {}, token).status == 200);
    f.advance(std::chrono::seconds(1));
    CHECK(f.call("GET", "/v1/forms", {}, token).status == 401);
  }
  SECTION("revoking the user ends every token and refuses logins") {
    auto t1 = f.login("officer.bantan", "secret-password", "d1");
    auto t2 = f.login("officer.bantan", "secret-password", "d2");
    auto n = revoke_user(*f.writer, "officer.bantan");
    REQUIRE(n.ok());
    CHECK(*n == 2);
    CHECK(f.call("GET", "/v1/forms", {}, t1).status == 401);
    CHECK(f.call("GET", "/v1/forms", {}, t2).status == 401);
    CHECK(f.call("POST", "/v1/login",
                 R"({"username": "officer.bantan", "password": "secret-password"})")
              .status == 401);
    f.add_user("officer.bantan", "officer", {"14.03.02"});  // enables it again
    CHECK(f.call("GET", "/v1/forms", {}, t1).status == 401);
    CHECK(f.login("officer.bantan").size() > 0);
  }
  SECTION("logout ends the caller's token only") {
    auto t1 = f.login("officer.bantan", "secret-password", "d1");
    auto t2 = f.login("officer.bantan", "secret-password", "d2");
    CHECK(f.call("POST", "/v1/logout", {}, t1).status == 200);
    CHECK(f.call("GET", "/v1/forms", {}, t1).status == 401);
    CHECK(f.call("POST", "/v1/logout", {}, t1).status == 401);
    CHECK(f.call("GET", "/v1/forms", {}, t2).status == 200);
  }
}

TEST_CASE("only admins publish forms", "[server][auth][forms]") {
  ServerFixture f(RouterOptions{}, false);
  f.add_user("officer.bantan", "officer", {"14.03.02"});
  f.add_user("admin", "admin", {});
  auto officer = f.login("officer.bantan");
  auto admin = f.login("admin");
  const std::string body = survey_form_v1().dump();

  auto denied = f.call("PUT", "/v1/forms/survey", body, officer);
  CHECK(denied.status == 403);
  CHECK(json::parse(denied.body)["error"]["code"] == "forbidden");
  CHECK(f.call("GET", "/v1/forms/survey", {}, officer).status == 404);

  auto first = f.call("PUT", "/v1/forms/survey", body, admin);
  REQUIRE(first.status == 200);
  CHECK(json::parse(first.body) == json{{"id", "survey"}, {"version", 1}});
  SECTION("the same definition again creates nothing; a changed one is the next version") {
    auto same = f.call("PUT", "/v1/forms/survey", body, admin);
    CHECK(json::parse(same.body)["version"] == 1);
    json v2 = survey_form_v2();
    v2["version"] = 77;  // ignored
    auto next = f.call("PUT", "/v1/forms/survey", v2.dump(), admin);
    CHECK(json::parse(next.body)["version"] == 2);
    auto latest = f.call("GET", "/v1/forms/survey", {}, officer);
    CHECK(json::parse(latest.body)["version"] == 2);
    auto old = f.call("GET", "/v1/forms/survey?version=1", {}, officer);
    REQUIRE(old.status == 200);
    CHECK(json::parse(old.body)["fields"].size() == survey_form_v1()["fields"].size());
    CHECK(f.call("GET", "/v1/forms/survey?version=3", {}, officer).status == 404);
    CHECK(f.call("GET", "/v1/forms/survey?version=x", {}, officer).status == 400);
    auto list = json::parse(f.call("GET", "/v1/forms", {}, officer).body);
    REQUIRE(list["forms"].size() == 1);
    CHECK(list["forms"][0]["version"] == 2);
  }
  SECTION("invalid definitions are 400 validation with the field") {
    json bad = survey_form_v1();
    bad["fields"][2]["min"] = "zero";
    auto r = f.call("PUT", "/v1/forms/survey", bad.dump(), admin);
    CHECK(r.status == 400);
    auto e = json::parse(r.body)["error"];
    CHECK(e["code"] == "validation");
    CHECK(e["field"] == "fields[2].min");
    auto wrong_id = f.call("PUT", "/v1/forms/other", body, admin);
    CHECK(wrong_id.status == 400);
    CHECK(json::parse(wrong_id.body)["error"]["field"] == "id");
  }
}
