// An in-memory Transport for tests: answers every request with a handler (a fake
// server, a script, a fault) and records what was sent. Header-only, so test
// programs that do not use it get nothing extra.
#pragma once

#include <chrono>
#include <functional>
#include <utility>
#include <vector>

#include "fieldsync/transport.hpp"

namespace fieldsync::testing {

class MemoryTransport : public Transport {
 public:
  using Handler = std::function<Result<HttpResponse>(const HttpRequest&)>;

  explicit MemoryTransport(Handler handler) : handler_(std::move(handler)) {}

  Result<HttpResponse> send(const HttpRequest& request,
                            std::chrono::milliseconds timeout) override {
    requests.push_back(request);
    timeouts.push_back(timeout);
    return handler_(request);
  }

  std::vector<HttpRequest> requests;
  std::vector<std::chrono::milliseconds> timeouts;

 private:
  Handler handler_;
};

}  // namespace fieldsync::testing
