// Tests of the real fieldsync-faultproxy binary in front of a tiny TCP server:
// byte-exact pass-through, fault rates and their observable effect on both ends,
// reproducibility by seed, throttling by profile, delays and the loopback rule.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "faultproxy/harness.hpp"

using namespace fieldsync::test;

namespace {

constexpr std::size_t kRequestSize = 300;
constexpr std::size_t kResponseSize = 2000;

struct Run {
  std::vector<LogLine> faults;  // drop, reset, truncate lines, in log order
  std::vector<LogLine> all;
  std::vector<ClientResult> clients;
  std::vector<ServerConn> server;
  nlohmann::json counters;
  std::string request, response;
};

// `n` sequential request/response exchanges through a proxy with `args`.
Run run_exchanges(std::vector<std::string> args, int n) {
  Run run;
  run.request = pattern_bytes(kRequestSize, 1);
  run.response = pattern_bytes(kResponseSize, 2);
  TestServer server(kRequestSize, run.response);
  args.insert(args.begin(), {"--upstream", "127.0.0.1:" + std::to_string(server.port())});
  ProxyProcess proxy(args);
  for (int i = 0; i < n; ++i) run.clients.push_back(exchange(proxy.port(), run.request, false));
  run.server = server.connections();
  int code = -1;
  run.counters = proxy.stop(&code);
  REQUIRE(code == 0);
  REQUIRE(run.counters.is_object());
  run.all = proxy.log();
  for (const auto& l : run.all)
    if (l.kind == "drop" || l.kind == "reset" || l.kind == "truncate") run.faults.push_back(l);
  return run;
}

std::vector<std::string> fault_args(std::uint64_t seed) {
  return {"--seed", std::to_string(seed), "--drop-rate", "0.2", "--reset-rate",
          "0.1",    "--truncate-rate",    "0.15"};
}

}  // namespace

TEST_CASE("pass-through is byte-exact", "[faultproxy][process]") {
  TestServer echo(0, "");
  SECTION("one large transfer, no faults") {
    ProxyProcess proxy({"--upstream", "127.0.0.1:" + std::to_string(echo.port())});
    auto data = pattern_bytes(3 * 1024 * 1024 + 17, 11);
    auto r = exchange(proxy.port(), data, true);
    CHECK(r.eof);
    REQUIRE(r.received.size() == data.size());
    CHECK(r.received == data);
    auto counters = proxy.stop();
    CHECK(counters["connections"] == 1);
    CHECK(counters["passed"] == 1);
    CHECK(counters["faults"] == 0);
    CHECK(counters["bytes_up"] == data.size());
    CHECK(counters["bytes_down"] == data.size());
    CHECK(proxy.log().empty());
  }
  SECTION("concurrent connections through a shaped lan link") {
    ProxyProcess proxy(
        {"--upstream", "127.0.0.1:" + std::to_string(echo.port()), "--profile", "lan"});
    std::vector<std::string> sent(6);
    std::vector<ClientResult> got(6);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < sent.size(); ++i) {
      sent[i] = pattern_bytes(200 * 1024 + i, 100 + i);
      threads.emplace_back([&, i] { got[i] = exchange(proxy.port(), sent[i], true); });
    }
    for (auto& t : threads) t.join();
    for (std::size_t i = 0; i < sent.size(); ++i) {
      INFO("connection " << i);
      CHECK(got[i].eof);
      CHECK(got[i].received == sent[i]);
    }
    auto counters = proxy.stop();
    CHECK(counters["passed"] == sent.size());
    CHECK(counters["throttled"] == sent.size());
  }
}

TEST_CASE("faults happen at the configured rates and do what the log says",
          "[faultproxy][process]") {
  const int n = 400;
  auto run = run_exchanges(fault_args(20261128), n);
  REQUIRE(run.clients.size() == static_cast<std::size_t>(n));
  REQUIRE(run.server.size() == static_cast<std::size_t>(n));

  int drop = 0, reset = 0, truncate = 0;
  std::vector<const LogLine*> by_conn(n + 1, nullptr);
  for (const auto& f : run.faults) {
    REQUIRE(f.conn >= 1);
    REQUIRE(f.conn <= static_cast<std::uint64_t>(n));
    REQUIRE(by_conn[f.conn] == nullptr);  // at most one fault per connection
    by_conn[f.conn] = &f;
    drop += f.kind == "drop";
    reset += f.kind == "reset";
    truncate += f.kind == "truncate";
  }
  auto near = [&](int count, double p) {
    return std::abs(count - n * p) <= 4 * std::sqrt(n * p * (1 - p));
  };
  CHECK(near(drop, 0.2));
  CHECK(near(reset, 0.1));
  CHECK(near(truncate, 0.15));
  CHECK(run.counters["drop_up"].get<int>() + run.counters["drop_down"].get<int>() == drop);
  CHECK(run.counters["reset_up"].get<int>() + run.counters["reset_down"].get<int>() == reset);
  CHECK(run.counters["truncate"] == truncate);
  CHECK(run.counters["passed"] == n - drop - reset - truncate);
  CHECK(run.counters["connections"] == n);

  // Each connection's two ends show exactly the logged fault. Connections are
  // sequential, so the server's accept order is the proxy's connection id order.
  int drops_before_server = 0, drops_after_commit = 0;
  for (int id = 1; id <= n; ++id) {
    const auto& client = run.clients[id - 1];
    const auto& server = run.server[id - 1];
    const LogLine* f = by_conn[id];
    INFO("connection " << id
                       << (f ? " " + f->kind + " " + f->dir + " @" + std::to_string(f->offset)
                             : " pass"));
    if (!f) {
      CHECK(server.received == kRequestSize);
      CHECK(server.request == run.request);
      CHECK(client.eof);
      CHECK(client.received == run.response);
    } else if (f->dir == "up") {
      // Cut before the request reached the server: a prefix at most, no answer.
      REQUIRE(f->offset < kRequestSize);
      CHECK(client.received.empty());
      CHECK_FALSE(server.answered);
      CHECK(server.received <= f->offset);
      if (f->kind == "drop") {
        CHECK(server.received == f->offset);
        CHECK(server.request == run.request.substr(0, f->offset));
        CHECK(client.eof);
        ++drops_before_server;
      }
    } else {
      // The server got the whole request and answered (it "committed"); the
      // client gets only the first `offset` bytes of the answer.
      REQUIRE(f->offset < kResponseSize);
      CHECK(server.received == kRequestSize);
      CHECK(server.answered);
      CHECK(run.response.compare(0, client.received.size(), client.received) == 0);
      if (f->kind == "reset") {
        CHECK(client.received.size() <= f->offset);
        CHECK(client.reset);
      } else {
        CHECK(client.received.size() == f->offset);
        CHECK(client.eof);
      }
      if (f->kind == "truncate") CHECK(f->offset >= kResponseSize / 2);
      if (f->kind == "drop") ++drops_after_commit;
    }
  }
  CHECK(drops_before_server > 0);
  CHECK(drops_after_commit > 0);
}

TEST_CASE("the same seed gives the same fault sequence", "[faultproxy][process]") {
  auto a = run_exchanges(fault_args(42), 120);
  auto b = run_exchanges(fault_args(42), 120);
  auto c = run_exchanges(fault_args(43), 120);
  REQUIRE_FALSE(a.faults.empty());
  CHECK(a.faults == b.faults);
  CHECK(a.counters == b.counters);
  CHECK_FALSE(a.faults == c.faults);
}

TEST_CASE("throttling slows a transfer by the profile's figures",
          "[faultproxy][process][shaping]") {
  struct Profile {
    const char* name;
    double bandwidth_bps;
    double rtt_ms;
    std::size_t bytes;
  };
  // Payloads sized to keep each case around a second.
  for (Profile p : {Profile{"2g", 50'000, 600, 2'000}, Profile{"3g", 1'000'000, 200, 60'000},
                    Profile{"satellite", 2'000'000, 1200, 60'000}}) {
    DYNAMIC_SECTION("profile " << p.name) {
      auto request = pattern_bytes(p.bytes, 5);
      TestServer server(p.bytes, "ok");
      ProxyProcess proxy(
          {"--upstream", "127.0.0.1:" + std::to_string(server.port()), "--profile", p.name});
      auto r = exchange(proxy.port(), request, false);
      CHECK(r.received == "ok");
      auto counters = proxy.stop();
      const LogLine* up = nullptr;
      const LogLine* down = nullptr;
      auto log = proxy.log();
      for (const auto& l : log) {
        if (l.kind != "throttle") continue;
        (l.dir == "up" ? up : down) = &l;
      }
      REQUIRE(up != nullptr);
      REQUIRE(down != nullptr);
      CHECK(up->offset == p.bytes);
      CHECK(down->offset == 2);
      CHECK(up->extra.at("profile") == p.name);
      // The model: all bytes serialised at the bandwidth, then one-way latency.
      double expect_up = p.bytes * 8 * 1000 / p.bandwidth_bps + p.rtt_ms / 2;
      double expect_down = 2 * 8 * 1000 / p.bandwidth_bps + p.rtt_ms / 2;
      auto up_delay = std::stod(up->extra.at("delay_ms"));
      auto down_delay = std::stod(down->extra.at("delay_ms"));
      CHECK(up_delay >= std::floor(expect_up) - 1);
      CHECK(down_delay >= std::floor(expect_down) - 1);
      // What the proxy measured holding the bytes is at least the model.
      CHECK(std::stod(up->extra.at("held_ms")) >= up_delay);
      CHECK(std::stod(down->extra.at("held_ms")) >= down_delay);
      CHECK(counters["throttled"] == 1);
      CHECK(counters["throttle_delay_ms"].get<double>() == up_delay + down_delay);
      // The client cannot have been faster than the bytes were held.
      CHECK(r.total_ms >= up_delay + down_delay);
    }
  }
  SECTION("no profile: no shaping at all") {
    auto request = pattern_bytes(60'000, 5);
    TestServer server(request.size(), "ok");
    ProxyProcess proxy({"--upstream", "127.0.0.1:" + std::to_string(server.port())});
    auto r = exchange(proxy.port(), request, false);
    CHECK(r.received == "ok");
    auto counters = proxy.stop();
    CHECK(counters["throttled"] == 0);
    CHECK(counters["throttle_delay_ms"] == 0);
    CHECK(proxy.log().empty());
  }
}

TEST_CASE("delays hold the response for delay-ms", "[faultproxy][process]") {
  auto run = run_exchanges({"--delay-ms", "250", "--delay-rate", "0.5", "--seed", "9"}, 16);
  int delayed = 0;
  for (const auto& l : run.all) {
    REQUIRE(l.kind == "delay");
    CHECK(l.dir == "down");
    CHECK(l.extra.at("delay_ms") == "250");
    const auto& client = run.clients[l.conn - 1];
    CHECK(client.first_byte_ms >= 250.0);
    ++delayed;
  }
  CHECK(delayed > 0);
  CHECK(delayed < 16);
  CHECK(run.counters["delay"] == delayed);
  CHECK(run.counters["delay_ms"] == 250 * delayed);
  for (const auto& c : run.clients) CHECK(c.received == run.response);
}

TEST_CASE("non-loopback addresses are refused", "[faultproxy][process][address]") {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--listen", "0.0.0.0:0", "--upstream", "127.0.0.1:9"},
           {"--listen", "192.168.1.10:8080", "--upstream", "127.0.0.1:9"},
           {"--upstream", "10.0.0.1:80"},
           {"--upstream", "example.com:80"},
           {"--upstream", "[::ffff:8.8.8.8]:53"}}) {
    auto r = run_proxy_to_exit(args);
    INFO(args[1] << " -> " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.out.find("listening") == std::string::npos);
    CHECK(r.err.find("loopback") != std::string::npos);
  }
  SECTION("localhost is taken as 127.0.0.1") {
    TestServer echo(0, "");
    ProxyProcess proxy(
        {"--listen", "127.0.0.1:0", "--upstream", "localhost:" + std::to_string(echo.port())});
    auto r = exchange(proxy.port(), "hello", true);
    CHECK(r.received == "hello");
  }
  SECTION("bad rates are refused") {
    auto r = run_proxy_to_exit(
        {"--upstream", "127.0.0.1:9", "--drop-rate", "0.7", "--reset-rate", "0.7"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("must not exceed 1") != std::string::npos);
  }
}
