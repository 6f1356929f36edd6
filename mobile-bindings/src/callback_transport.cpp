// CallbackTransport: adapts the C ABI's HTTP hook to fieldsync::Transport.
#include "callback_transport.hpp"

#include <vector>

namespace fieldsync::c_api {

std::string join_url(const std::string& base_url, const std::string& target) {
  std::string url = base_url;
  while (!url.empty() && url.back() == '/') {
    url.pop_back();
  }
  return url + target;
}

namespace {

bool is_known_failure_code(std::int32_t code) {
  return code > static_cast<std::int32_t>(Errc::ok) && code <= static_cast<std::int32_t>(Errc::tls);
}

}  // namespace

Result<HttpResponse> CallbackTransport::send(const HttpRequest& request,
                                             std::chrono::milliseconds timeout) {
  std::vector<const char*> names;
  std::vector<const char*> values;
  names.reserve(request.headers.size());
  values.reserve(request.headers.size());
  for (const auto& [name, value] : request.headers) {
    names.push_back(name.c_str());
    values.push_back(value.c_str());
  }
  const std::string url = join_url(base_url_, request.target);

  fieldsync_http_request c_request{};
  c_request.method = request.method.c_str();
  c_request.url = url.c_str();
  c_request.target = request.target.c_str();
  c_request.header_count = names.size();
  c_request.header_names = names.data();
  c_request.header_values = values.data();
  c_request.body = request.body.data();
  c_request.body_size = request.body.size();
  c_request.timeout_ms = static_cast<std::int64_t>(timeout.count());

  fieldsync_http_response response;
  fieldsync_error error{};
  error.code = static_cast<std::int32_t>(Errc::network);
  if (!fn_(ctx_, &c_request, &response, &error)) {
    error.message[sizeof error.message - 1] = '\0';
    std::string message = error.message[0] != '\0' ? error.message : "the HTTP handler failed";
    Errc code = is_known_failure_code(error.code) ? static_cast<Errc>(error.code) : Errc::network;
    return Error{code, std::move(message)};
  }
  if (response.value.status < 100 || response.value.status > 599) {
    return Error{Errc::protocol, "the HTTP handler returned no valid status (" +
                                     std::to_string(response.value.status) + ")"};
  }
  return std::move(response.value);
}

}  // namespace fieldsync::c_api
