// The HTTP/1.1 server: accepts connections on one address and runs one session
// coroutine per connection (session.cpp) on a single I/O thread; requests run on a
// worker pool through the Router. Boost.Asio stays inside listener.cpp and
// session.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "fieldsync/error.hpp"
#include "limits.hpp"
#include "router.hpp"

namespace fieldsync::server {

class HttpServer {
 public:
  // `router` must outlive the server.
  HttpServer(Router& router, ServerLimits limits);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens. `port` 0 picks a free port. Returns the bound address as
  // "HOST:PORT" ("[::1]:8080" for IPv6). Errc::network when it cannot bind.
  Result<std::string> listen(const std::string& host, std::uint16_t port);

  // Serves HTTPS instead of HTTP: `cert_chain_file` is PEM with the server's
  // certificate first, `key_file` its PEM private key. TLS 1.2 or newer. Call
  // before run(). Errc::invalid_argument when the files cannot be used.
  Result<void> use_tls(const std::string& cert_chain_file, const std::string& key_file);

  // Serves until stop() is called or, with `handle_signals`, SIGINT/SIGTERM
  // arrives; then stops accepting, closes idle connections, lets in-flight
  // requests finish (up to limits.shutdown_grace) and returns. Call once.
  void run(bool handle_signals);

  // Starts the graceful shutdown from any thread.
  void stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace fieldsync::server
