// Test harness for fieldsync-faultproxy: runs the real binary as a child process,
// a tiny TCP server (echo, or fixed request then fixed response) on plain POSIX
// sockets, and a blocking client. Everything binds 127.0.0.1 only.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace fieldsync::test {

// One line of the proxy's fault log: "conn=3 kind=drop dir=up offset=120 ...".
struct LogLine {
  std::uint64_t conn = 0;
  std::string kind;
  std::string dir;
  std::uint64_t offset = 0;
  std::map<std::string, std::string> extra;  // delay_ms, held_ms, profile, ...
  bool operator==(const LogLine& o) const {
    return conn == o.conn && kind == o.kind && dir == o.dir && offset == o.offset;
  }
};

struct ExitResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs the proxy binary with `args`, waits for it and returns its output (for
// arguments the proxy must refuse; it exits at once).
ExitResult run_proxy_to_exit(const std::vector<std::string>& args);

class ProxyProcess {
 public:
  // Starts the proxy with `args` plus --log <temp file>; waits for "listening on".
  explicit ProxyProcess(std::vector<std::string> args);
  ~ProxyProcess();
  ProxyProcess(const ProxyProcess&) = delete;
  ProxyProcess& operator=(const ProxyProcess&) = delete;

  std::uint16_t port() const { return port_; }
  // SIGTERM, then the counters JSON line it prints, and its exit code.
  nlohmann::json stop(int* exit_code = nullptr);
  // The fault log (complete after stop()).
  std::vector<LogLine> log() const;

 private:
  int pid_ = -1;
  int out_fd_ = -1;
  std::uint16_t port_ = 0;
  std::string log_path_;
  std::string pending_;  // stdout read past the first line
};

// What the server saw on one accepted connection, in accept order.
struct ServerConn {
  std::size_t received = 0;
  bool answered = false;
  std::string request;  // request/response mode: what arrived
};

class TestServer {
 public:
  // request_size == 0: echo every byte back until EOF. Otherwise: read until
  // `request_size` bytes (or EOF/error), then send `response` in one write,
  // half-close and drain.
  TestServer(std::size_t request_size, std::string response);
  ~TestServer();
  std::uint16_t port() const { return port_; }
  std::vector<ServerConn> connections();  // waits briefly for handlers to end

 private:
  void handle(int fd, std::size_t index);
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::size_t request_size_;
  std::string response_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::vector<ServerConn> conns_;
  std::atomic<int> active_{0};
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

struct ClientResult {
  std::string received;
  bool reset = false;         // the read ended with ECONNRESET
  bool eof = false;           // the read ended with a clean end of stream
  double first_byte_ms = -1;  // time from the end of sending to the first byte read
  double total_ms = 0;        // time from connect to the end of the read
};

// Connects, sends `request` (one write, from a second thread when it is large so
// an echo cannot deadlock), half-closes when `half_close`, then reads to the end.
ClientResult exchange(std::uint16_t port, const std::string& request, bool half_close);

// Deterministic pseudo-random bytes.
std::string pattern_bytes(std::size_t n, std::uint64_t seed);

}  // namespace fieldsync::test
