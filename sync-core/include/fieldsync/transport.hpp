// The transport interface the sync engine talks to. Implementations: the
// Boost.Beast HTTP client (fieldsync::http, http_transport.hpp), the app's own
// HTTP stack through the C ABI, and in-memory ones in tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fieldsync/error.hpp"

namespace fieldsync {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, e.g. "/v1/sync"
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // Case-insensitive header lookup; empty when absent.
  std::string header(std::string_view name) const;
};

// One HTTP exchange. A transport returns an Error only when no HTTP response was
// received (Errc::network, Errc::timeout, Errc::tls, Errc::cancelled); any HTTP
// status, 4xx and 5xx included, is a response. Implementations must be usable from
// one thread at a time; they need not be thread-safe.
class Transport {
 public:
  virtual ~Transport() = default;
  // `timeout` bounds the whole exchange (connect, send, receive).
  virtual Result<HttpResponse> send(const HttpRequest& request,
                                    std::chrono::milliseconds timeout) = 0;
  // A second, independent transport to the same server, so that sync() can have
  // two requests out at once; it and this one may then each be used from its own
  // thread. nullptr (the default) when the implementation cannot make one: sync()
  // then keeps one request out at a time, on the calling thread.
  virtual std::unique_ptr<Transport> another() { return nullptr; }
};

}  // namespace fieldsync
