// An in-memory Transport for tests: answers every request with a handler (a fake
// server, a script, a fault) and records what was sent. Header-only, so test
// programs that do not use it get nothing extra.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
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

  // With offer_another set, another() gives transports that answer with the same
  // handler (which must then be thread-safe: sync() calls them from threads of
  // their own) and record their requests in their own lists, not these.
  std::unique_ptr<Transport> another() override {
    if (!offer_another) return nullptr;
    return std::make_unique<MemoryTransport>(handler_);
  }

  std::vector<HttpRequest> requests;
  std::vector<std::chrono::milliseconds> timeouts;
  bool offer_another = false;

 private:
  Handler handler_;
};

}  // namespace fieldsync::testing
