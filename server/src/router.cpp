// Routing and the endpoints of protocol.md (router.hpp). Order of checks for a
// request: path (404), method (405), token (401), content type (415), body
// (400 / 413), role and scopes (403 / 404), then the work. An error answer changes
// nothing on the server (failed logins are counted, by design).
#include "router.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>

#include "fieldsync/hlc.hpp"
#include "fieldsync/ids.hpp"
#include "form_catalog.hpp"
#include "merge.hpp"
#include "request_target.hpp"
#include "resolve.hpp"

namespace fieldsync::server {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string find_header(const Headers& headers, std::string_view name) {
  const std::string wanted = lower(name);
  for (const auto& [k, v] : headers)
    if (lower(k) == wanted) return v;
  return {};
}

Response json_response(int status, const json& body) {
  Response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  // `replace`: a message quoting a client's invalid UTF-8 must not break the answer.
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

Response error_response(int status, std::string_view code, std::string_view message,
                        std::string_view field = {}, const json& extra = json::object()) {
  json body = error_body(code, message, field);
  for (const auto& [k, v] : extra.items()) body["error"][k] = v;
  return json_response(status, body);
}

Response bad_request(std::string_view message) {
  return error_response(400, "bad_request", message);
}

Response not_allowed(std::string_view allow) {
  Response r = error_response(405, "method_not_allowed", "this path takes " + std::string(allow));
  r.headers.emplace_back("Allow", std::string(allow));
  return r;
}

// A failure of the store or the writer: 503 when the store cannot be used, else 500.
Response store_error(const Error& e) {
  switch (e.code) {
    case Errc::busy:
    case Errc::io:
    case Errc::corrupt:
    case Errc::schema_too_new:
      return error_response(503, "unavailable", "the store cannot be used: " + e.message);
    default:
      return error_response(500, "internal", "internal error: " + e.message);
  }
}

// "application/json" with at most a charset=utf-8 parameter.
bool is_json_media_type(std::string_view value) {
  auto semi = value.find(';');
  if (lower(trim(value.substr(0, semi))) != "application/json") return false;
  while (semi != std::string_view::npos) {
    value.remove_prefix(semi + 1);
    semi = value.find(';');
    std::string param = lower(trim(value.substr(0, semi)));
    if (param.empty()) continue;
    if (param != "charset=utf-8" && param != "charset=\"utf-8\"") return false;
  }
  return true;
}

// A query parameter that must be a whole number >= 0; nullopt when malformed.
std::optional<std::int64_t> parse_count(std::string_view s) {
  std::int64_t v = 0;
  if (s.empty() || s.size() > 19) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

std::string app_version(const Request& req) {
  std::string ua = req.header("User-Agent");
  std::string_view first = trim(ua);
  first = first.substr(0, first.find(' '));
  if (first.find('/') == std::string_view::npos) return {};
  return std::string(first.substr(0, 100));
}

Response from_admin(AdminReply reply) {
  Response r;
  r.status = reply.status;
  r.headers.emplace_back("Content-Type", std::move(reply.content_type));
  r.body = std::move(reply.body);
  return r;
}

json record_json(const RecordState& s) {
  json fields = json::object();
  for (const auto& [name, f] : s.row.fields)
    fields[name] = {{"value", f.value}, {"version", f.version}};
  json conflicts = json::array();
  for (const auto& c : s.conflicts) conflicts.push_back(c.to_json());
  return {{"id", s.row.id},
          {"form", s.row.form},
          {"form_version", s.row.form_version},
          {"scope", s.row.scope},
          {"deleted", s.row.deleted},
          {"version", s.row.version},
          {"fields", std::move(fields)},
          {"conflicts", std::move(conflicts)}};
}

}  // namespace

std::string Request::header(std::string_view name) const {
  return find_header(headers, name);
}
std::string Response::header(std::string_view name) const {
  return find_header(headers, name);
}

Router::Router(ServerStore& store, Writer& writer, Metrics& metrics, RouterOptions options)
    : store_(store),
      writer_(writer),
      metrics_(metrics),
      options_(std::move(options)),
      auth_(store, writer, options_.auth, options_.now_ms ? options_.now_ms : system_now_ms),
      admin_(store, writer) {
  if (!options_.now_ms) options_.now_ms = system_now_ms;
}

Response Router::handle_request(const Request& request) {
  const auto start = std::chrono::steady_clock::now();
  std::string group = "unknown";
  std::string user;
  Response res;
  try {
    res = dispatch(request, group, user);
  } catch (const std::exception& e) {
    res = error_response(500, "internal", std::string("internal error: ") + e.what());
  } catch (...) {
    res = error_response(500, "internal", "internal error");
  }
  res.headers.emplace_back("Cache-Control", "no-store");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics_.observe_request(group, res.status, seconds);
  if (options_.log) {
    std::string path = request.target.substr(0, request.target.find('?')).substr(0, 200);
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.1fms", seconds * 1000);
    options_.log(request.method.substr(0, 16) + " " + path + " " + std::to_string(res.status) +
                 " " + ms + " user=" + (user.empty() ? "-" : user) +
                 " addr=" + (request.remote_address.empty() ? "-" : request.remote_address));
  }
  return res;
}

void Router::note_refused(std::string_view method, std::string_view target, std::string_view remote,
                          int status) {
  metrics_.observe_request("refused", status, 0);
  if (!options_.log) return;
  std::string path(target.substr(0, std::min(target.find('?'), std::size_t{200})));
  options_.log(std::string(method.empty() ? "-" : method.substr(0, 16)) + " " +
               (path.empty() ? "-" : path) + " " + std::to_string(status) + " 0.0ms user=- addr=" +
               std::string(remote.empty() ? "-" : remote) + " refused=before-body");
}

Response Router::dispatch(const Request& req, std::string& group, std::string& user) {
  auto target = parse_request_target(req.target);
  if (!target) return bad_request("the request target must be a path");
  const auto& s = target->segments;
  const std::string& m = req.method;
  Caller caller;

  if (s.size() == 1 && s[0] == "healthz") {
    group = "healthz";
    if (m != "GET") return not_allowed("GET");
    return healthz();
  }
  if (s.size() == 1 && s[0] == "metrics") {
    group = "metrics";
    if (m != "GET") return not_allowed("GET");
    return metrics();
  }
  if (s.empty() || s[0] != "v1") return error_response(404, "not_found", "no such path");

  if (s.size() == 2 && s[1] == "login") {
    group = "login";
    if (m != "POST") return not_allowed("POST");
    return login(req, user);
  }

  // Everything else under /v1 needs a token; unknown paths answer 404 first.
  enum class Route {
    logout,
    forms,
    form,
    sync,
    records,
    record,
    conflicts,
    conflict,
    resolve,
    quarantine,
    devices,
    history,
    resolve_bulk,
    report,
    export_csv,
    user_revoke,
    user_reinstate,
    device_revoke,
    device_reinstate
  };
  struct Match {
    Route route;
    const char* group;
    std::vector<std::string_view> methods;
  };
  std::optional<Match> match;
  if (s.size() == 2 && s[1] == "logout") {
    match = Match{Route::logout, "logout", {"POST"}};
  } else if (s.size() == 2 && s[1] == "forms") {
    match = Match{Route::forms, "forms", {"GET"}};
  } else if (s.size() == 3 && s[1] == "forms" && !s[2].empty()) {
    match = Match{Route::form, "form", {"GET", "PUT"}};
  } else if (s.size() == 2 && s[1] == "sync") {
    match = Match{Route::sync, "sync", {"POST"}};
  } else if (s.size() == 2 && s[1] == "records") {
    match = Match{Route::records, "records", {"GET"}};
  } else if (s.size() == 4 && s[1] == "records" && !s[2].empty() && s[3] == "history") {
    match = Match{Route::history, "history", {"GET"}};
  } else if (s.size() == 3 && s[1] == "reports" && s[2] == "kla") {
    match = Match{Route::report, "report", {"GET"}};
  } else if (s.size() == 2 && s[1] == "export") {
    match = Match{Route::export_csv, "export", {"GET"}};
  } else if (s.size() == 3 && s[1] == "conflicts" && s[2] == "resolve-bulk") {
    match = Match{Route::resolve_bulk, "resolve_bulk", {"POST"}};
  } else if (s.size() == 3 && s[1] == "records" && !s[2].empty()) {
    match = Match{Route::record, "record", {"GET"}};
  } else if (s.size() == 2 && s[1] == "conflicts") {
    match = Match{Route::conflicts, "conflicts", {"GET"}};
  } else if (s.size() == 3 && s[1] == "conflicts" && !s[2].empty()) {
    match = Match{Route::conflict, "conflict", {"GET"}};
  } else if (s.size() == 4 && s[1] == "conflicts" && !s[2].empty() && s[3] == "resolve") {
    match = Match{Route::resolve, "resolve", {"POST"}};
  } else if (s.size() == 2 && s[1] == "quarantine") {
    match = Match{Route::quarantine, "quarantine", {"GET"}};
  } else if (s.size() == 2 && s[1] == "devices") {
    match = Match{Route::devices, "devices", {"GET"}};
  } else if (s.size() == 4 && s[1] == "users" && !s[2].empty() && s[3] == "revoke") {
    match = Match{Route::user_revoke, "user_revoke", {"POST"}};
  } else if (s.size() == 4 && s[1] == "users" && !s[2].empty() && s[3] == "reinstate") {
    match = Match{Route::user_reinstate, "user_reinstate", {"POST"}};
  } else if (s.size() == 4 && s[1] == "devices" && !s[2].empty() && s[3] == "revoke") {
    match = Match{Route::device_revoke, "device_revoke", {"POST"}};
  } else if (s.size() == 4 && s[1] == "devices" && !s[2].empty() && s[3] == "reinstate") {
    match = Match{Route::device_reinstate, "device_reinstate", {"POST"}};
  }
  if (!match) return error_response(404, "not_found", "no such path");
  group = match->group;
  if (std::find(match->methods.begin(), match->methods.end(), m) == match->methods.end()) {
    std::string allow;
    for (auto method : match->methods) allow += (allow.empty() ? "" : ", ") + std::string(method);
    return not_allowed(allow);
  }
  if (auto denied = authenticate(req, caller)) return *denied;
  user = caller.username;
  const bool admin_only =
      match->route == Route::conflicts || match->route == Route::conflict ||
      match->route == Route::resolve || match->route == Route::quarantine ||
      match->route == Route::devices || match->route == Route::resolve_bulk ||
      match->route == Route::user_revoke || match->route == Route::user_reinstate ||
      match->route == Route::device_revoke || match->route == Route::device_reinstate;
  if (admin_only && !caller.is_admin())
    return error_response(403, "forbidden", "only administrators may use this endpoint");

  switch (match->route) {
    case Route::logout:
      return logout(req, caller);
    case Route::forms:
      return list_forms();
    case Route::form:
      if (m == "PUT") return put_form(req, caller, s[2]);
      return get_form(s[2], target->query);
    case Route::sync:
      return sync(req, caller);
    case Route::records:
      return list_records(caller, target->query);
    case Route::record:
      return get_record(caller, s[2]);
    case Route::conflicts:
      return list_conflicts(target->query);
    case Route::conflict:
      return get_conflict(s[2]);
    case Route::resolve:
      return resolve(req, caller, s[2]);
    case Route::quarantine:
      return list_quarantine(target->query);
    case Route::devices:
      return list_devices();
    case Route::history:
      return from_admin(admin_.history(caller, s[2]));
    case Route::report:
      return from_admin(admin_.kla_report(caller, target->query));
    case Route::export_csv:
      return from_admin(admin_.export_csv(caller, target->query));
    case Route::resolve_bulk: {
      json body;
      if (auto e = read_json(req, body)) return *e;
      return from_admin(admin_.resolve_bulk(caller, body, options_.now_ms()));
    }
    case Route::user_revoke:
      return from_admin(admin_.revoke_user(caller, s[2]));
    case Route::user_reinstate:
      return from_admin(admin_.reinstate_user(caller, s[2]));
    case Route::device_revoke:
      return from_admin(admin_.revoke_device(caller, s[2], options_.now_ms()));
    case Route::device_reinstate:
      return from_admin(admin_.reinstate_device(caller, s[2]));
  }
  return error_response(404, "not_found", "no such path");
}

std::optional<Response> Router::authenticate(const Request& req, Caller& caller) {
  auto unauthorized = [](std::string_view message) {
    Response r = error_response(401, "unauthorized", message);
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
  };
  std::string value = req.header("Authorization");
  std::string_view v = trim(value);
  if (v.size() < 7 || lower(v.substr(0, 7)) != "bearer ")
    return unauthorized("a bearer token is required");
  auto found = auth_.authenticate(trim(v.substr(7)));
  if (!found) return store_error(found.error());
  if (!*found) return unauthorized("the token is unknown, expired or revoked");
  caller = std::move(**found);
  return std::nullopt;
}

std::optional<Response> Router::read_json(const Request& req, json& out) {
  std::string encoding = lower(trim(req.header("Content-Encoding")));
  if (!encoding.empty() && encoding != "identity")
    return error_response(415, "unsupported_media_type",
                          "Content-Encoding " + encoding + " is not supported");
  if (!is_json_media_type(req.header("Content-Type")))
    return error_response(415, "unsupported_media_type",
                          "the body must be Content-Type: application/json");
  auto parsed = parse_strict_json(req.body, options_.limits.json_max_depth);
  if (!parsed) return bad_request(parsed.error().message);
  out = std::move(parsed).value();
  return std::nullopt;
}

Response Router::login(const Request& req, std::string& user) {
  json body;
  if (auto e = read_json(req, body)) return *e;
  if (!body.is_object()) return bad_request("the body must be a JSON object");
  auto username = body.find("username");
  auto password = body.find("password");
  if (username == body.end() || !username->is_string() || username->get<std::string>().empty() ||
      username->get<std::string>().size() > 256)
    return bad_request("username (a string of 1-256 bytes) is required");
  if (password == body.end() || !password->is_string() ||
      password->get<std::string>().size() > 4096)
    return bad_request("password (a string) is required");
  LoginRequest lr{username->get<std::string>(), password->get<std::string>(), ""};
  if (auto dev = body.find("device_id"); dev != body.end() && !dev->is_null()) {
    if (!dev->is_string() || !is_valid_device_id(dev->get<std::string>()))
      return bad_request("device_id must be 1-64 characters of letters, digits, '-', '_' or '.'");
    lr.device_id = dev->get<std::string>();
  }
  auto outcome = auth_.login(lr, req.remote_address);
  if (!outcome) return store_error(outcome.error());
  switch (outcome->kind) {
    case LoginOutcome::Kind::ok: {
      user = outcome->response.user.username;
      return json_response(200, outcome->response.to_json());
    }
    case LoginOutcome::Kind::throttled: {
      Response r = error_response(429, "too_many_requests", "too many failed logins; retry later",
                                  {}, {{"retry_after", outcome->retry_after_s}});
      r.headers.emplace_back("Retry-After", std::to_string(outcome->retry_after_s));
      return r;
    }
    case LoginOutcome::Kind::device_revoked:
      return error_response(
          403, "device_revoked",
          "device " + lr.device_id + " was revoked by an administrator; ask one to reinstate it",
          "device_id");
    case LoginOutcome::Kind::bad_credentials:
      break;
  }
  return error_response(401, "unauthorized", "wrong user name or password");
}

Response Router::logout(const Request& req, const Caller&) {
  std::string value = req.header("Authorization");
  auto r = auth_.logout(trim(trim(value).substr(7)));
  if (!r) return store_error(r.error());
  return json_response(200, {{"status", "ok"}});
}

Response Router::list_forms() {
  auto forms = store_.latest_forms();
  if (!forms) return store_error(forms.error());
  json list = json::array();
  for (const auto& f : *forms) list.push_back(f.to_json());
  return json_response(200, {{"forms", std::move(list)}});
}

Response Router::get_form(const std::string& id, const std::map<std::string, std::string>& query) {
  std::optional<std::int64_t> version;
  if (auto it = query.find("version"); it != query.end()) {
    version = parse_count(it->second);
    if (!version || *version < 1) return bad_request("version must be a whole number >= 1");
  }
  auto form = store_.form(id, version);
  if (!form) return store_error(form.error());
  if (!*form)
    return error_response(
        404, "not_found",
        version ? "form " + id + " has no version " + std::to_string(*version) : "no form " + id);
  return json_response(200, (*form)->to_json());
}

Response Router::put_form(const Request& req, const Caller& caller, const std::string& id) {
  if (!caller.is_admin())
    return error_response(403, "forbidden", "only administrators publish forms");
  json body;
  if (auto e = read_json(req, body)) return *e;
  auto published = publish_form(writer_, body, id, caller.username, options_.now_ms());
  if (!published) {
    const Error& e = published.error();
    if (e.code == Errc::validation) return error_response(400, "validation", e.message, e.field);
    return store_error(e);
  }
  return json_response(200, {{"id", published->id}, {"version", published->version}});
}

Response Router::sync(const Request& req, const Caller& caller) {
  json body;
  if (auto e = read_json(req, body)) return *e;
  auto shape = decode_sync_request_shape(std::move(body));
  if (!shape) return bad_request(shape.error().message);
  SyncRequest& sr = *shape;
  const auto& limits = options_.limits;
  if (static_cast<std::int64_t>(sr.raw_changes.size()) > limits.batch_limit)
    return error_response(413, "payload_too_large",
                          "at most " + std::to_string(limits.batch_limit) + " changes per request",
                          {}, {{"limit", limits.batch_limit}});
  const std::int64_t limit = std::min(sr.limit, limits.pull_limit_max);

  // A revoked device may neither push nor pull, whatever token it shows (a token
  // issued without a device id included). Its outbox stays on the phone.
  auto device_refused = [&] {
    return error_response(
        403, "device_revoked",
        "device " + sr.device_id + " was revoked by an administrator; ask one to reinstate it",
        "device_id");
  };
  auto revocation = store_.device_revocation(sr.device_id);
  if (!revocation) return store_error(revocation.error());
  if (*revocation) return device_refused();

  // Checked before the push so that an error answer changes nothing.
  auto head = store_.head_seq();
  if (!head) return store_error(head.error());
  if (sr.since > *head)
    return error_response(409, "cursor_ahead",
                          "since " + std::to_string(sr.since) + " is beyond the server's log (" +
                              std::to_string(*head) + "); this server's data was reset or restored",
                          {}, {{"head", *head}});

  const std::int64_t now = options_.now_ms();
  DeviceUpdate device;
  device.device_id = sr.device_id;
  device.user = caller.username;
  device.sync_at_ms = now;
  device.changes_received = static_cast<std::int64_t>(sr.raw_changes.size());
  device.app_version = app_version(req);

  SyncResponse answer;
  if (!sr.raw_changes.empty()) {
    // Each change's replay identity and decoding are worked out here, off the
    // writer thread, while the writer already merges the changes done so far.
    std::vector<std::optional<Received>> received(sr.raw_changes.size());
    HashFeed feed;
    MergeStats stats;
    bool revoked_meanwhile = false;
    auto ticket = writer_.start([&](WriteTxn& txn) -> Result<void> {
      answer.results.clear();
      // Again inside the push's transaction: a revocation committed since the
      // check above wins, and nothing is written.
      revoked_meanwhile = txn.device_revocation(sr.device_id).has_value();
      if (revoked_meanwhile) return {};
      Merger merger(txn, MergeContext{caller, sr.device_id, now});
      for (std::size_t i = 0; i < sr.raw_changes.size(); ++i) {
        if (!feed.wait_for(i))
          return Error(Errc::internal, "the request's changes were not hashed");
        answer.results.push_back(merger.apply(sr.raw_changes[i], *received[i]));
      }
      stats = merger.stats();
      DeviceUpdate d = device;
      d.last_error = stats.last_error;
      if (stats.max_hlc_ms) d.clock_offset_ms = *stats.max_hlc_ms - now;
      if (stats.min_hlc_ms) d.oldest_late_change_ms = now - *stats.min_hlc_ms;
      txn.update_device(d);
      return {};
    });
    try {
      for (std::size_t i = 0; i < sr.raw_changes.size(); ++i) {
        received[i].emplace(sr.raw_changes[i]);
        feed.publish(i + 1);
      }
    } catch (...) {
      feed.abandon();       // the job stops waiting and rolls back
      (void)ticket.wait();  // it uses this frame: it must be over before unwinding
      throw;
    }
    auto r = ticket.wait();
    if (!r) return store_error(r.error());
    if (revoked_meanwhile) return device_refused();
    metrics_.count_changes(stats);
    // The merger's results are compact (addition E); a client that did not ask
    // for that gets every version.
    if (!sr.compact_versions)
      for (std::size_t i = 0; i < answer.results.size(); ++i)
        expand_versions(answer.results[i], sr.raw_changes[i]);
  } else {
    writer_.post([device](WriteTxn& txn) -> Result<void> {
      txn.update_device(device);
      return {};
    });
  }

  // Addition D: with "echo": false the entries of this request's own changes
  // (replays included) stay out of the pull; their results carry what they did.
  PullOmit omit;
  if (!sr.echo)
    for (const auto& r : answer.results)
      if (r.seq > 0) omit.seqs.insert(r.seq);
  // Addition F: the entries of the device's changes up to a counter it names stay
  // out too; it has their results or gets them by resending those changes.
  omit.device_id = sr.device_id;
  omit.own_through = sr.omit_own_through;
  auto page = store_.pull(ScopeFilter::of(caller), sr.since, limit, omit);
  if (!page) return store_error(page.error());
  answer.changes = std::move(page->entries);
  answer.cursor = page->cursor;
  answer.more = page->more;
  // Addition E: versions equal to the result's seq are left out when asked.
  return json_response(200, answer.to_json(sr.compact_versions));
}

Response Router::list_records(const Caller& caller,
                              const std::map<std::string, std::string>& query) {
  RecordsQuery q;
  q.filter = ScopeFilter::of(caller);
  q.limit = 500;
  if (auto it = query.find("form"); it != query.end()) q.form = it->second;
  if (auto it = query.find("scope"); it != query.end()) {
    if (!is_valid_region_code(it->second))
      return bad_request("scope must be a region code like 14.03.01");
    q.scope_prefix = it->second;
  }
  if (auto it = query.find("since"); it != query.end()) {
    auto v = parse_count(it->second);
    if (!v) return bad_request("since must be a whole number >= 0");
    q.since = *v;
  }
  if (auto it = query.find("limit"); it != query.end()) {
    auto v = parse_count(it->second);
    if (!v) return bad_request("limit must be a whole number >= 0");
    q.limit = *v;
  }
  q.limit = std::min(q.limit, options_.limits.records_limit_max);
  auto page = store_.records(q);
  if (!page) return store_error(page.error());
  json list = json::array();
  for (const auto& r : page->records) list.push_back(record_json(r));
  return json_response(
      200, {{"records", std::move(list)}, {"cursor", page->cursor}, {"more", page->more}});
}

Response Router::get_record(const Caller& caller, const std::string& id) {
  auto rec = store_.record(id);
  if (!rec) return store_error(rec.error());
  if (!*rec || !caller.covers((*rec)->row.scope))
    return error_response(404, "not_found", "no record " + id);
  return json_response(200, record_json(**rec));
}

// A conflict as protocol.md shows it; `server` is read live.
Result<json> Router::conflict_json(const ConflictRow& c) {
  json server = {{"value", nullptr}, {"seq", 0}};
  auto rec = store_.record(c.record);
  if (!rec) return rec.error();
  if (*rec) {
    const RecordState& s = **rec;
    std::int64_t seq = s.row.version;
    if (c.kind == "field") {
      auto it = s.row.fields.find(c.field);
      if (it != s.row.fields.end()) {
        server["value"] = it->second.value;
        seq = it->second.version;
      } else {
        seq = 0;
      }
    } else if (!s.row.deleted) {
      json values = json::object();
      for (const auto& [name, f] : s.row.fields) values[name] = f.value;
      server["value"] = std::move(values);
    }
    server["seq"] = seq;
    if (seq > 0) {
      auto entry = store_.log_entry(seq);
      if (!entry) return entry.error();
      if (*entry) {
        server["author"] = (*entry)->author;
        server["device"] = (*entry)->device;
        server["hlc"] = (*entry)->hlc;
      }
    }
  }
  json candidates = json::array();
  for (const auto& k : c.candidates) {
    json j = {{"value", k.value},
              {"op", k.op},
              {"change", k.change},
              {"author", k.author},
              {"device", k.device},
              {"hlc", k.hlc},
              {"received_at", k.received_at},
              {"form_version", k.form_version}};
    if (c.kind == "duplicate_record") j["record"] = k.record;
    candidates.push_back(std::move(j));
  }
  json out = {{"id", c.id},
              {"kind", c.kind},
              {"record", c.record},
              {"form", c.form},
              {"scope", c.scope},
              {"field", c.field},
              {"status", c.status},
              {"server", std::move(server)},
              {"candidates", std::move(candidates)},
              {"opened_at", c.opened_at}};
  if (c.kind == "duplicate_record") out["records"] = c.records;
  if (!c.resolution.is_null()) out["resolution"] = c.resolution;
  return out;
}

Response Router::list_conflicts(const std::map<std::string, std::string>& query) {
  ConflictQuery q;
  auto text = [&](const char* key, std::string& out) {
    if (auto it = query.find(key); it != query.end()) out = it->second;
  };
  text("status", q.status);
  text("kind", q.kind);
  text("form", q.form);
  text("record", q.record);
  text("scope", q.scope);
  if (!q.status.empty() && q.status != "open" && q.status != "resolved")
    return bad_request("status must be open or resolved");
  if (!q.scope.empty() && !is_valid_region_code(q.scope))
    return bad_request("scope must be a region code");
  for (auto [key, out] : {std::pair{"after", &q.after}, std::pair{"limit", &q.limit}}) {
    if (auto it = query.find(key); it != query.end()) {
      auto v = parse_count(it->second);
      if (!v) return bad_request(std::string(key) + " must be a whole number >= 0");
      *out = *v;
    }
  }
  q.limit = std::min<std::int64_t>(q.limit, 1000);
  auto page = store_.conflicts(q);
  if (!page) return store_error(page.error());
  json list = json::array();
  for (const auto& c : page->conflicts) {
    auto j = conflict_json(c);
    if (!j) return store_error(j.error());
    list.push_back(std::move(j).value());
  }
  return json_response(200, {{"conflicts", std::move(list)}, {"more", page->more}});
}

Response Router::get_conflict(const std::string& id) {
  auto n = parse_count(id);
  if (!n) return error_response(404, "not_found", "no conflict " + id);
  auto c = store_.conflict(*n);
  if (!c) return store_error(c.error());
  if (!*c) return error_response(404, "not_found", "no conflict " + id);
  auto j = conflict_json(**c);
  if (!j) return store_error(j.error());
  return json_response(200, *j);
}

Response Router::resolve(const Request& req, const Caller& caller, const std::string& id) {
  auto n = parse_count(id);
  if (!n) return error_response(404, "not_found", "no conflict " + id);
  json body;
  if (auto e = read_json(req, body)) return *e;
  ResolveOutcome outcome;
  const std::int64_t now = options_.now_ms();
  auto r = writer_.run([&](WriteTxn& txn) -> Result<void> {
    outcome = resolve_conflict(txn, caller, now, *n, body);
    if (outcome.failure != ResolveFailure::none)
      return Error(Errc::invalid_argument, outcome.message);
    return {};
  });
  switch (outcome.failure) {
    case ResolveFailure::none:
      break;
    case ResolveFailure::not_found:
      return error_response(404, "not_found", outcome.message);
    case ResolveFailure::already_resolved:
      return error_response(409, "already_resolved", outcome.message);
    case ResolveFailure::deleted:
      return error_response(409, "deleted", outcome.message);
    case ResolveFailure::validation:
      return error_response(400, "validation", outcome.message, outcome.field);
  }
  if (!r) return store_error(r.error());
  return json_response(
      200, {{"seq", outcome.seqs.empty() ? 0 : outcome.seqs.back()}, {"seqs", outcome.seqs}});
}

Response Router::list_quarantine(const std::map<std::string, std::string>& query) {
  QuarantineQuery q;
  if (auto it = query.find("device"); it != query.end()) q.device = it->second;
  if (auto it = query.find("user"); it != query.end()) q.user = it->second;
  for (auto [key, out] : {std::pair{"after", &q.after}, std::pair{"limit", &q.limit}}) {
    if (auto it = query.find(key); it != query.end()) {
      auto v = parse_count(it->second);
      if (!v) return bad_request(std::string(key) + " must be a whole number >= 0");
      *out = *v;
    }
  }
  q.limit = std::min<std::int64_t>(q.limit, 1000);
  auto page = store_.quarantine(q);
  if (!page) return store_error(page.error());
  json list = json::array();
  for (const auto& r : page->rows) {
    json error = {{"code", r.reason.code}, {"message", r.reason.message}};
    if (!r.reason.field.empty()) error["field"] = r.reason.field;
    list.push_back({{"id", r.id},
                    {"change_id", r.change_id},
                    {"device", r.device},
                    {"user", r.user},
                    {"change", r.change},
                    {"error", std::move(error)},
                    {"received_at", r.received_at}});
  }
  return json_response(200, {{"rejected", std::move(list)}, {"more", page->more}});
}

Response Router::list_devices() {
  auto devices = store_.devices();
  if (!devices) return store_error(devices.error());
  auto revocations = store_.device_revocations();
  if (!revocations) return store_error(revocations.error());
  std::map<std::string, const DeviceRevocation*> revoked;
  json revoked_list = json::array();
  for (const auto& r : *revocations) {
    revoked[r.device_id] = &r;
    revoked_list.push_back({{"device_id", r.device_id},
                            {"revoked_at", format_rfc3339_ms(r.revoked_at_ms)},
                            {"revoked_by", r.revoked_by}});
  }
  json list = json::array();
  for (const auto& d : *devices) {
    auto rev = revoked.find(d.device_id);
    json flags = json::array();
    // Only a clock running ahead is visible: a negative offset is mostly an officer
    // syncing late.
    if (d.clock_offset_ms && *d.clock_offset_ms > options_.clock_skew_ms)
      flags.push_back("clock_skew");
    list.push_back(
        {{"device_id", d.device_id},
         {"user", d.user},
         {"last_sync_at", format_rfc3339_ms(d.last_sync_at_ms)},
         {"last_error", d.last_error},
         {"changes_received", d.changes_received},
         {"clock_offset_ms", d.clock_offset_ms ? json(*d.clock_offset_ms) : json(nullptr)},
         {"oldest_late_change_ms",
          d.oldest_late_change_ms ? json(*d.oldest_late_change_ms) : json(nullptr)},
         {"protocol_version", d.protocol_version},
         {"app_version", d.app_version},
         {"flags", std::move(flags)},
         {"revoked", rev != revoked.end()},
         {"revoked_at", rev != revoked.end() ? json(format_rfc3339_ms(rev->second->revoked_at_ms))
                                             : json(nullptr)}});
  }
  return json_response(
      200, {{"devices", std::move(list)}, {"revoked_devices", std::move(revoked_list)}});
}

Response Router::healthz() {
  if (auto ok = store_.check(); !ok) return error_response(503, "unavailable", ok.error().message);
  return json_response(200, {{"status", "ok"}});
}

Response Router::metrics() {
  auto stats = store_.stats();
  Response r;
  r.status = 200;
  r.headers.emplace_back("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
  r.body = metrics_.render(stats ? &*stats : nullptr);
  return r;
}

}  // namespace fieldsync::server
