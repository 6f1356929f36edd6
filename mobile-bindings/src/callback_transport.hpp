// A fieldsync::Transport that hands every HTTP exchange to the app's own HTTP
// function (fieldsync_http_fn of the C ABI): how Android uses OkHttp and iOS
// URLSession, with the platform's TLS, proxies and certificate pinning.
#pragma once

#include <chrono>
#include <string>

#include "fieldsync.h"
#include "fieldsync/transport.hpp"

struct fieldsync_http_response {
  fieldsync::HttpResponse value;
};

namespace fieldsync::c_api {

class CallbackTransport final : public Transport {
 public:
  // `fn` must not be null; `base_url` (may be empty) prefixes each target to
  // make the request's `url`.
  CallbackTransport(fieldsync_http_fn fn, void* ctx, std::string base_url)
      : fn_(fn), ctx_(ctx), base_url_(std::move(base_url)) {}

  // Calls the handler on this thread. A handler that reports failure with a
  // code outside fieldsync_errc (or FIELDSYNC_OK) counts as Errc::network; one
  // that claims success with a status outside 100..599 is Errc::protocol.
  Result<HttpResponse> send(const HttpRequest& request, std::chrono::milliseconds timeout) override;

 private:
  fieldsync_http_fn fn_;
  void* ctx_;
  std::string base_url_;
};

// base_url without trailing '/' followed by target.
std::string join_url(const std::string& base_url, const std::string& target);

}  // namespace fieldsync::c_api
