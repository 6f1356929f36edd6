// The HTTP API of protocol.md as a function from a plain request to a plain
// response: routing, authentication, body checks, the endpoints, structured JSON
// errors, metrics and the one-line request log. No sockets and no Beast here, so
// tests call handle_request() directly.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "admin_api.hpp"
#include "auth.hpp"
#include "limits.hpp"
#include "metrics.hpp"
#include "server_store.hpp"
#include "writer.hpp"

namespace fieldsync::server {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, e.g. "/v1/records?since=5"
  Headers headers;
  std::string body;
  std::string remote_address;  // client IP, for login throttling and the log

  // Case-insensitive; the first value, or "" when absent.
  std::string header(std::string_view name) const;
};

struct Response {
  int status = 200;
  Headers headers;
  std::string body;

  std::string header(std::string_view name) const;
};

struct RouterOptions {
  ServerLimits limits;
  AuthOptions auth;
  std::function<std::int64_t()> now_ms;         // Unix ms; default: the system clock
  std::function<void(const std::string&)> log;  // one line per request; may be empty
  // GET /v1/devices flags `clock_skew` when a device's clock runs ahead by more.
  std::int64_t clock_skew_ms = 10 * 60 * 1000;
};

class Router {
 public:
  // `store`, `writer` and `metrics` must outlive the router.
  Router(ServerStore& store, Writer& writer, Metrics& metrics, RouterOptions options);

  // Handles one request. Thread-safe; blocks while the store works (call it off
  // the I/O threads). Never throws: failures become 5xx answers.
  Response handle_request(const Request& request);

  const ServerLimits& limits() const { return options_.limits; }

  // Counts (path group "refused") and logs a request that its connection
  // answered itself before the router saw it: over a limit (413, 431, 429) or
  // malformed HTTP (400). `method`/`target` may be empty when unknown. Thread-safe.
  void note_refused(std::string_view method, std::string_view target, std::string_view remote,
                    int status);

 private:
  Response dispatch(const Request& req, std::string& group, std::string& user);
  std::optional<Response> authenticate(const Request& req, Caller& caller);
  std::optional<Response> read_json(const Request& req, json& out);

  Response login(const Request& req, std::string& user);
  Response logout(const Request& req, const Caller& caller);
  Response list_forms();
  Response get_form(const std::string& id, const std::map<std::string, std::string>& query);
  Response put_form(const Request& req, const Caller& caller, const std::string& id);
  Response sync(const Request& req, const Caller& caller);
  Response list_records(const Caller& caller, const std::map<std::string, std::string>& query);
  Response get_record(const Caller& caller, const std::string& id);
  Response list_conflicts(const std::map<std::string, std::string>& query);
  Response get_conflict(const std::string& id);
  Response resolve(const Request& req, const Caller& caller, const std::string& id);
  Response list_quarantine(const std::map<std::string, std::string>& query);
  Response list_devices();
  Result<json> conflict_json(const ConflictRow& c);
  Response healthz();
  Response metrics();

  ServerStore& store_;
  Writer& writer_;
  Metrics& metrics_;
  RouterOptions options_;
  Auth auth_;
  AdminApi admin_;
};

}  // namespace fieldsync::server
