// fieldsync-faultproxy: a seeded fault-injecting TCP proxy between devices and the
// server, on loopback only, for chaos tests (docs/faults.md says what it does).
#include <cstdio>
#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "fault_plan.hpp"
#include "proxy.hpp"

namespace fp = fieldsync::faultproxy;

namespace {

int fail(const std::string& message) {
  std::fprintf(stderr, "fieldsync-faultproxy: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fieldsync-faultproxy: a seeded fault-injecting TCP proxy (loopback only)"};
  std::string listen = "127.0.0.1:0", upstream, profile = "none", log_path;
  fp::FaultRates rates;
  std::uint64_t seed = 1;
  std::int64_t bandwidth_kbit = -1, rtt_ms = -1;
  app.add_option("--listen", listen, "loopback HOST:PORT to listen on (port 0 = any)")->capture_default_str();
  app.add_option("--upstream", upstream, "loopback HOST:PORT of the server")->required();
  app.add_option("--profile", profile, "link profile: 2g, 3g, satellite, lan or none")->capture_default_str();
  app.add_option("--bandwidth-kbit", bandwidth_kbit, "override the profile's bandwidth (kbit/s, 0 = unlimited)");
  app.add_option("--rtt-ms", rtt_ms, "override the profile's round-trip time (ms)");
  app.add_option("--drop-rate", rates.drop, "share of connections dropped at a random byte")->capture_default_str();
  app.add_option("--reset-rate", rates.reset, "share of connections reset (RST) at a random byte")
      ->capture_default_str();
  app.add_option("--truncate-rate", rates.truncate, "share of responses cut short with a clean EOF")
      ->capture_default_str();
  app.add_option("--delay-ms", rates.delay_ms, "hold the first bytes of each response this long")
      ->capture_default_str();
  app.add_option("--delay-rate", rates.delay, "share of connections delayed when --delay-ms > 0")
      ->capture_default_str();
  app.add_option("--seed", seed, "seed of the fault decisions")->capture_default_str();
  app.add_option("--log", log_path, "write the fault log here instead of stderr");
  CLI11_PARSE(app, argc, argv);

  auto listen_at = fp::parse_loopback(listen, true);
  if (!listen_at) return fail("--listen " + listen_at.error().message);
  auto upstream_at = fp::parse_loopback(upstream, false);
  if (!upstream_at) return fail("--upstream " + upstream_at.error().message);
  if (auto r = fp::check_rates(rates); !r) return fail(r.error().message);
  auto link = fp::link_profile(profile);
  if (!link) return fail(link.error().message);
  if (bandwidth_kbit >= 0) link->bandwidth_bps = bandwidth_kbit * 1000;
  if (rtt_ms >= 0) link->rtt_ms = rtt_ms;

  std::FILE* log_file = stderr;
  if (!log_path.empty()) {
    log_file = std::fopen(log_path.c_str(), "a");
    if (!log_file) return fail("cannot open --log " + log_path);
  }
  fp::FaultLog log(log_file);
  {
    boost::asio::io_context io;
    fp::ProxyConfig config{*listen_at, *upstream_at, rates, *link, seed};
    fp::Proxy proxy(io, config, log);
    auto port = proxy.open();
    if (!port) return fail(port.error().message);
    const std::string& host = listen_at->host;
    bool v6 = host.find(':') != std::string::npos;
    std::printf("listening on %s%s%s:%u\n", v6 ? "[" : "", host.c_str(), v6 ? "]" : "",
                static_cast<unsigned>(*port));
    std::fflush(stdout);
    proxy.start();

    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      proxy.stop();
      std::printf("%s\n", proxy.counters().to_json().dump().c_str());
      std::fflush(stdout);
      io.stop();
    });
    io.run();
  }
  if (log_file != stderr) std::fclose(log_file);
  return 0;
}
