// The C ABI of include/fieldsync.h over fieldsync::core. Every entry point is
// noexcept and funnels through guarded(), the one place that turns exceptions
// into fieldsync_error values, so nothing escapes into C, Java or Swift.
#include "fieldsync.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "callback_transport.hpp"
#include "fieldsync/error.hpp"
#include "fieldsync/form.hpp"
#include "fieldsync/salvage.hpp"
#include "fieldsync/store.hpp"
#include "fieldsync/sync.hpp"
#include "fieldsync/transport.hpp"
#ifdef FIELDSYNC_C_HAS_HTTP
#include "fieldsync/http_transport.hpp"
#endif

#ifndef FIELDSYNC_VERSION_STRING
#define FIELDSYNC_VERSION_STRING "0.0.0"
#endif

using fieldsync::Errc;
using fieldsync::Error;
using fieldsync::json;
using fieldsync::Result;

struct fieldsync_cancel {
  std::atomic<bool> requested{false};
};

struct fieldsync_store {
  std::mutex mutex;
  // The thread holding `mutex`, so that a call from inside one of this handle's
  // callbacks fails instead of deadlocking.
  std::atomic<std::thread::id> owner{};
  std::unique_ptr<fieldsync::Store> store;
  std::string server_url;
  fieldsync_http_fn handler = nullptr;
  void* handler_ctx = nullptr;
  std::unique_ptr<fieldsync::Transport> builtin;  // made on first use
};

namespace {

// The store setting that keeps the server URL (shared with fieldsync-cli).
constexpr const char* kServerUrlSetting = "server_url";
constexpr std::int64_t kDefaultHttpTimeoutMs = 30000;

// Copies `s` into dst[cap] NUL-terminated, cutting at a UTF-8 character
// boundary. Never allocates (it runs inside catch handlers).
void copy_truncated(char* dst, std::size_t cap, std::string_view s) noexcept {
  std::size_t n = s.size();
  if (n >= cap) {
    n = cap - 1;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0U) == 0x80U) {
      --n;
    }
  }
  std::memcpy(dst, s.data(), n);
  dst[n] = '\0';
}

void set_error(fieldsync_error* out, Errc code, std::string_view message,
               std::string_view field = {}) noexcept {
  if (out == nullptr) {
    return;
  }
  out->code = static_cast<std::int32_t>(code);
  copy_truncated(out->field, sizeof out->field, field);
  copy_truncated(out->message, sizeof out->message, message);
}

void set_error(fieldsync_error* out, const Error& error) noexcept {
  set_error(out, error.code, error.message, error.field);
}

// Runs `body` (returning Result<void>) and reports its failure or any exception
// through `out_error`. The only try/catch of the C ABI.
template <class F>
bool guarded(fieldsync_error* out_error, F&& body) noexcept {
  try {
    Result<void> result = body();
    if (!result.ok()) {
      set_error(out_error, result.error());
      return false;
    }
    return true;
  } catch (const std::bad_alloc&) {
    set_error(out_error, Errc::internal, "out of memory");
  } catch (const std::exception& e) {
    set_error(out_error, Errc::internal, e.what());
  } catch (...) {
    set_error(out_error, Errc::internal, "unknown exception");
  }
  return false;
}

// Holds a store handle's mutex for one call and records the owning thread.
class HandleLock {
 public:
  explicit HandleLock(fieldsync_store& handle) : handle_(handle) {}
  HandleLock(const HandleLock&) = delete;
  HandleLock& operator=(const HandleLock&) = delete;
  ~HandleLock() {
    if (locked_) {
      handle_.owner.store(std::thread::id{});
      handle_.mutex.unlock();
    }
  }

  Result<void> acquire() {
    if (handle_.owner.load() == std::this_thread::get_id()) {
      return Error{Errc::invalid_argument,
                   "a store handle was called from inside one of its own callbacks"};
    }
    handle_.mutex.lock();
    handle_.owner.store(std::this_thread::get_id());
    locked_ = true;
    return {};
  }

 private:
  fieldsync_store& handle_;
  bool locked_ = false;
};

// guarded() for functions on a store handle: checks it and serializes calls.
template <class F>
bool with_store(fieldsync_store* handle, fieldsync_error* out_error, F&& body) noexcept {
  return guarded(out_error, [&]() -> Result<void> {
    if (handle == nullptr) {
      return Error{Errc::invalid_argument, "the store handle is NULL"};
    }
    HandleLock lock(*handle);
    if (auto locked = lock.acquire(); !locked.ok()) {
      return locked;
    }
    return body(*handle);
  });
}

char* dup_string(std::string_view s) {
  auto* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p == nullptr) {
    throw std::bad_alloc();
  }
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  return p;
}

// JSON text for the caller; invalid UTF-8 in stored text is replaced, not fatal.
char* dup_json(const json& j) {
  return dup_string(j.dump(-1, ' ', false, json::error_handler_t::replace));
}

Result<void> require_text(const char* text, const char* name) {
  if (text == nullptr) {
    return Error{Errc::invalid_argument, std::string(name) + " is NULL", name};
  }
  return {};
}

Result<json> parse_json_arg(const char* text, const char* name) {
  if (auto ok = require_text(text, name); !ok.ok()) {
    return ok.error();
  }
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return Error{Errc::invalid_argument, std::string(name) + " is not valid JSON", name};
  }
  return j;
}

Error bad_member(const std::string& name, const char* expected) {
  return Error{Errc::invalid_argument, "\"" + name + "\" must be " + expected, name};
}

Error unknown_member(const std::string& name) {
  return Error{Errc::invalid_argument, "unknown member \"" + name + "\"", name};
}

Result<fieldsync::PutRequest> parse_put_request(const json& j) {
  if (!j.is_object()) {
    return Error{Errc::invalid_argument, "the put request must be a JSON object"};
  }
  fieldsync::PutRequest request;
  for (const auto& [key, value] : j.items()) {
    if (key == "form" || key == "scope" || key == "record") {
      if (value.is_null() && key == "record") {
        continue;
      }
      if (!value.is_string()) {
        return bad_member(key, "a string");
      }
      std::string text = value.get<std::string>();
      (key == "form"    ? request.form
       : key == "scope" ? request.scope
                        : request.record) = std::move(text);
    } else if (key == "fields") {
      if (!value.is_object()) {
        return bad_member(key, "an object");
      }
      request.fields = value;
    } else if (key == "form_version") {
      if (value.is_null()) {
        continue;
      }
      if (!value.is_number_integer()) {
        return bad_member(key, "an integer");
      }
      request.form_version = value.get<std::int64_t>();
    } else {
      return unknown_member(key);
    }
  }
  return request;
}

Result<fieldsync::RecordQuery> parse_query(const char* text) {
  fieldsync::RecordQuery query;
  if (text == nullptr) {
    return query;
  }
  auto parsed = parse_json_arg(text, "query_json");
  if (!parsed.ok()) {
    return parsed.error();
  }
  const json& j = *parsed;
  if (!j.is_object()) {
    return Error{Errc::invalid_argument, "the query must be a JSON object"};
  }
  for (const auto& [key, value] : j.items()) {
    if (key == "form" || key == "scope_prefix") {
      if (!value.is_string()) {
        return bad_member(key, "a string");
      }
      (key == "form" ? query.form : query.scope_prefix) = value.get<std::string>();
    } else if (key == "include_deleted") {
      if (!value.is_boolean()) {
        return bad_member(key, "true or false");
      }
      query.include_deleted = value.get<bool>();
    } else if (key == "limit") {
      if (!value.is_number_integer()) {
        return bad_member(key, "an integer");
      }
      query.limit = value.get<std::int64_t>();
    } else {
      return unknown_member(key);
    }
  }
  return query;
}

Result<void> parse_sync_options(const char* text, fieldsync::SyncOptions& options) {
  if (text == nullptr) {
    return {};
  }
  auto parsed = parse_json_arg(text, "options_json");
  if (!parsed.ok()) {
    return parsed.error();
  }
  const json& j = *parsed;
  if (!j.is_object()) {
    return Error{Errc::invalid_argument, "the sync options must be a JSON object"};
  }
  for (const auto& [key, value] : j.items()) {
    if (key == "user_agent") {
      if (!value.is_string()) {
        return bad_member(key, "a string");
      }
      options.user_agent = value.get<std::string>();
      continue;
    }
    if (!value.is_number_integer() || value.get<std::int64_t>() <= 0) {
      return bad_member(key, "a positive integer");
    }
    const auto n = value.get<std::int64_t>();
    if (key == "batch_size") {
      options.batch_size = n;
    } else if (key == "pull_limit") {
      options.pull_limit = n;
    } else if (key == "attempt_timeout_ms") {
      options.attempt_timeout = std::chrono::milliseconds(n);
    } else if (key == "max_attempts") {
      if (n > 1000) {
        return bad_member(key, "at most 1000");
      }
      options.max_attempts = static_cast<int>(n);
    } else if (key == "backoff_initial_ms") {
      options.backoff_initial = std::chrono::milliseconds(n);
    } else if (key == "backoff_max_ms") {
      options.backoff_max = std::chrono::milliseconds(n);
    } else {
      return unknown_member(key);
    }
  }
  return {};
}

Result<void> check_server_url(std::string_view url) {
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
    return Error{Errc::invalid_argument, "the server URL must start with http:// or https://",
                 "server_url"};
  }
  return {};
}

// The transport for login/sync: the app's handler when set, else the built-in
// client. `scratch` owns a per-call handler adapter.
Result<fieldsync::Transport*> transport_for(fieldsync_store& s,
                                            std::unique_ptr<fieldsync::Transport>& scratch) {
  if (s.handler != nullptr) {
    scratch = std::make_unique<fieldsync::c_api::CallbackTransport>(s.handler, s.handler_ctx,
                                                                    s.server_url);
    return scratch.get();
  }
#ifdef FIELDSYNC_C_HAS_HTTP
  if (!s.builtin) {
    if (s.server_url.empty()) {
      return Error{Errc::invalid_argument,
                   "no server URL: open the store with one, or set an HTTP handler"};
    }
    auto made = fieldsync::make_http_transport({s.server_url, {}});
    if (!made.ok()) {
      return made.error();
    }
    s.builtin = std::move(made).value();
  }
  return s.builtin.get();
#else
  return Error{Errc::invalid_argument,
               "this library has no built-in HTTP client: set an HTTP handler"};
#endif
}

fieldsync_sync_progress to_c(const fieldsync::SyncProgress& p) {
  fieldsync_sync_progress c{};
  c.round_trips = p.round_trips;
  c.sent = p.sent;
  c.applied = p.applied;
  c.conflicts = p.conflicts;
  c.rejected = p.rejected;
  c.received = p.received;
  c.bytes_up = p.bytes_up;
  c.bytes_down = p.bytes_down;
  c.retries = p.retries;
  c.cursor = p.cursor;
  return c;
}

json review_entries(const std::vector<fieldsync::RecordView>& records) {
  json out = json::array();
  for (const auto& record : records) {
    if (record.under_review) {
      json values = json::object();
      for (const auto& [name, state] : record.fields) {
        values[name] = state.value;
      }
      out.push_back({{"record", record.id},
                     {"form", record.form},
                     {"scope", record.scope},
                     {"field", ""},
                     {"value", record.deleted ? json(nullptr) : values},
                     {"my_value", nullptr},
                     {"conflict_id", 0}});
    }
    for (const auto& [name, state] : record.fields) {
      if (!state.under_review) {
        continue;
      }
      out.push_back({{"record", record.id},
                     {"form", record.form},
                     {"scope", record.scope},
                     {"field", name},
                     {"value", state.value},
                     {"my_value", state.my_value ? *state.my_value : json(nullptr)},
                     {"conflict_id", state.conflict_id}});
    }
  }
  return out;
}

}  // namespace

extern "C" {

int32_t fieldsync_abi_version(void) noexcept {
  return FIELDSYNC_ABI_VERSION;
}

const char* fieldsync_version(void) noexcept {
  return FIELDSYNC_VERSION_STRING;
}

void fieldsync_free(void* p) noexcept {
  std::free(p);
}

bool fieldsync_error_is_transient(const fieldsync_error* error) noexcept {
  if (error == nullptr || error->code <= 0 || error->code > static_cast<std::int32_t>(Errc::tls)) {
    return false;
  }
  return fieldsync::errc_is_transient(static_cast<Errc>(error->code));
}

const char* fieldsync_errc_name(int32_t code) noexcept {
  if (code < 0 || code > static_cast<std::int32_t>(Errc::tls)) {
    return "unknown";
  }
  // errc_name returns views of string literals, so data() is NUL-terminated.
  return fieldsync::errc_name(static_cast<Errc>(code)).data();
}

void fieldsync_error_set(fieldsync_error* error, int32_t code, const char* message) noexcept {
  if (error == nullptr) {
    return;
  }
  error->code = code;
  error->field[0] = '\0';
  copy_truncated(error->message, sizeof error->message,
                 message != nullptr ? std::string_view(message) : std::string_view());
}

fieldsync_store* fieldsync_store_open(const char* path, const char* server_url,
                                      fieldsync_error* out_error) noexcept {
  fieldsync_store* out = nullptr;
  guarded(out_error, [&]() -> Result<void> {
    if (path == nullptr || *path == '\0') {
      return Error{Errc::invalid_argument, "the store path is empty", "path"};
    }
    const bool new_url = server_url != nullptr && *server_url != '\0';
    if (new_url) {
      if (auto ok = check_server_url(server_url); !ok.ok()) {
        return ok;
      }
    }
    fieldsync::StoreOptions options;
    options.path = path;
    auto opened = fieldsync::Store::open(options);
    if (!opened.ok()) {
      return opened.error();
    }
    auto handle = std::make_unique<fieldsync_store>();
    handle->store = std::move(opened).value();
    if (new_url) {
      if (auto saved = handle->store->set_setting(kServerUrlSetting, server_url); !saved.ok()) {
        return saved;
      }
      handle->server_url = server_url;
    } else {
      auto saved = handle->store->setting(kServerUrlSetting);
      if (!saved.ok()) {
        return saved.error();
      }
      handle->server_url = saved->value_or("");
    }
    out = handle.release();
    return {};
  });
  return out;
}

void fieldsync_store_close(fieldsync_store* store) noexcept {
  // Destruction only closes SQLite handles; a failure there is not reportable.
  guarded(nullptr, [&]() -> Result<void> {
    delete store;
    return {};
  });
}

char* fieldsync_store_device_id(fieldsync_store* store, fieldsync_error* out_error) noexcept {
  char* out = nullptr;
  with_store(store, out_error, [&](fieldsync_store& s) -> Result<void> {
    out = dup_string(s.store->device_id());
    return {};
  });
  return out;
}

char* fieldsync_store_status(fieldsync_store* store, fieldsync_error* out_error) noexcept {
  char* out = nullptr;
  with_store(store, out_error, [&](fieldsync_store& s) -> Result<void> {
    auto status = s.store->status();
    if (!status.ok()) {
      return status.error();
    }
    out = dup_json(status->to_json());
    return {};
  });
  return out;
}

char* fieldsync_store_salvage(const char* path, const char* out_path,
                              fieldsync_error* out_error) noexcept {
  char* out = nullptr;
  guarded(out_error, [&]() -> Result<void> {
    if (path == nullptr || *path == '\0' || out_path == nullptr || *out_path == '\0') {
      return Error{Errc::invalid_argument, "path and out_path are required"};
    }
    auto report = fieldsync::salvage_store(path, out_path);
    if (!report.ok()) {
      return report.error();
    }
    out = dup_json(report->summary_json());
    return {};
  });
  return out;
}

bool fieldsync_form_import(fieldsync_store* store, const char* form_json,
                           fieldsync_error* out_error) noexcept {
  return with_store(store, out_error, [&](fieldsync_store& s) -> Result<void> {
    if (auto ok = require_text(form_json, "form_json"); !ok.ok()) {
      return ok;
    }
    auto form = fieldsync::Form::parse_text(form_json);
    if (!form.ok()) {
      return form.error();
    }
    return s.store->import_form(*form);
  });
}

char* fieldsync_form_list(fieldsync_store* store, fieldsync_error* out_error) noexcept {
  char* out = nullptr;
  with_store(store, out_error, [&](fieldsync_store& s) -> Result<void> {
    auto forms = s.store->forms();
    if (!forms.ok()) {
      return forms.error();
    }
    json list = json::array();
    for (const auto& form : *forms) {
      list.push_back(form.to_json());
    }
    out = dup_json(list);
    return {};
  });
  return out;
}

char* fieldsync_record_put(fieldsync_store* store, const char* request_json,
                           fieldsync_error* out_error) noexcept {
  char* out = nullptr;
  with_store(store, out_error, [&](fieldsync_store& s) -> Result<void> {
    auto parsed = parse_json_arg(request_json, "request_json");
    if (!parsed.ok()) {
      return parsed.error();
    }
    auto request = parse_put_request(*parsed);
    if (!request.ok()) {
      return request.error();
    }
    auto id = s.store->put(*request);
    if (!id.ok()) {
      return id.error();
    }
    out = dup_string(*id);
    return {};
  });
  return out;
}

char* fieldsync_record_get(fieldsync_store* store, const char* record_id,
                           fieldsync_error* out_error) noexcept {
  char* out = nullptr;
  with_store(store, out_error, [&](fieldsync_store& s) -> Result<void> {
    if (auto ok = require_text(record_id, "record_id"); !ok.ok()) {
      return ok;
    }
    auto record = s.store->get(record_id);
    if (!record.ok()) {
      return record.error();
    }
    out = dup_json(record->to_json());
    return {};
  });
  return out;
}

char* fieldsync_record_list(fieldsync_store* store, const char* query_json,
                            fieldsync_error* out_error) noexcept {
  char* out = nullptr;
  with_store(store, out_error, [&](fieldsync_store& s) -> Result<void> {
    auto query = parse_query(query_json);
    if (!query.ok()) {
      return query.error();
    }
    auto records = s.store->list(*query);
    if (!records.ok()) {
      return records.error();
    }
    json list = json::array();
    for (const auto& record : *records) {
      list.push_back(record.to_json());
    }
    out = dup_json(list);
    return {};
  });
  return out;
}

bool fieldsync_record_delete(fieldsync_store* store, const char* record_id,
                             fieldsync_error* out_error) noexcept {
  return with_store(store, out_error, [&](fieldsync_store& s) -> Result<void> {
    if (auto ok = require_text(record_id, "record_id"); !ok.ok()) {
      return ok;
    }
    return s.store->remove(record_id);
  });
}

char* fieldsync_outbox_list(fieldsync_store* store, int64_t limit,
                            fieldsync_error* out_error) noexcept {
  char* out = nullptr;
  with_store(store, out_error, [&](fieldsync_store& s) -> Result<void> {
    auto entries = s.store->outbox(limit < 0 ? -1 : limit);
    if (!entries.ok()) {
      return entries.error();
    }
    json list = json::array();
    for (const auto& entry : *entries) {
      list.push_back({{"counter", entry.counter},
                      {"change", entry.change.to_json()},
                      {"attempted", entry.attempted},
                      {"created_at", entry.created_at}});
    }
    out = dup_json(list);
    return {};
  });
  return out;
}

char* fieldsync_review_list(fieldsync_store* store, fieldsync_error* out_error) noexcept {
  char* out = nullptr;
  with_store(store, out_error, [&](fieldsync_store& s) -> Result<void> {
    fieldsync::RecordQuery query;
    query.include_deleted = true;
    auto records = s.store->list(query);
    if (!records.ok()) {
      return records.error();
    }
    out = dup_json(review_entries(*records));
    return {};
  });
  return out;
}

char* fieldsync_rejected_list(fieldsync_store* store, fieldsync_error* out_error) noexcept {
  char* out = nullptr;
  with_store(store, out_error, [&](fieldsync_store& s) -> Result<void> {
    auto rejected = s.store->rejected();
    if (!rejected.ok()) {
      return rejected.error();
    }
    json list = json::array();
    for (const auto& r : *rejected) {
      list.push_back(
          {{"change", r.change.to_json()},
           {"reason",
            {{"code", r.reason.code}, {"message", r.reason.message}, {"field", r.reason.field}}},
           {"rejected_at", r.rejected_at}});
    }
    out = dup_json(list);
    return {};
  });
  return out;
}

bool fieldsync_rejected_discard(fieldsync_store* store, const char* change_id,
                                fieldsync_error* out_error) noexcept {
  return with_store(store, out_error, [&](fieldsync_store& s) -> Result<void> {
    if (auto ok = require_text(change_id, "change_id"); !ok.ok()) {
      return ok;
    }
    return s.store->discard_rejected(change_id);
  });
}

char* fieldsync_receipt_list(fieldsync_store* store, int64_t limit,
                             fieldsync_error* out_error) noexcept {
  char* out = nullptr;
  with_store(store, out_error, [&](fieldsync_store& s) -> Result<void> {
    auto receipts = s.store->receipts(limit < 0 ? -1 : limit);
    if (!receipts.ok()) {
      return receipts.error();
    }
    json list = json::array();
    for (const auto& r : *receipts) {
      list.push_back({{"change_id", r.change_id},
                      {"record", r.record},
                      {"status", r.status},
                      {"seq", r.seq},
                      {"received_at", r.received_at}});
    }
    out = dup_json(list);
    return {};
  });
  return out;
}

void fieldsync_http_response_set_status(fieldsync_http_response* response,
                                        int32_t status) noexcept {
  if (response != nullptr) {
    response->value.status = status;
  }
}

void fieldsync_http_response_add_header(fieldsync_http_response* response, const char* name,
                                        const char* value) noexcept {
  guarded(nullptr, [&]() -> Result<void> {
    if (response != nullptr && name != nullptr) {
      response->value.headers.emplace_back(name, value != nullptr ? value : "");
    }
    return {};
  });
}

void fieldsync_http_response_set_body(fieldsync_http_response* response, const char* body,
                                      size_t size) noexcept {
  guarded(nullptr, [&]() -> Result<void> {
    if (response != nullptr) {
      response->value.body.assign(body != nullptr ? body : "", body != nullptr ? size : 0);
    }
    return {};
  });
}

int32_t fieldsync_http_response_status(const fieldsync_http_response* response) noexcept {
  return response != nullptr ? response->value.status : 0;
}

bool fieldsync_store_set_http_handler(fieldsync_store* store, fieldsync_http_fn fn, void* ctx,
                                      fieldsync_error* out_error) noexcept {
  return with_store(store, out_error, [&](fieldsync_store& s) -> Result<void> {
    s.handler = fn;
    s.handler_ctx = fn != nullptr ? ctx : nullptr;
    return {};
  });
}

bool fieldsync_http_send(const char* base_url, const fieldsync_http_request* request,
                         fieldsync_http_response* response, fieldsync_error* out_error) noexcept {
  return guarded(out_error, [&]() -> Result<void> {
    if (base_url == nullptr || request == nullptr || response == nullptr ||
        request->method == nullptr || request->target == nullptr) {
      return Error{Errc::invalid_argument,
                   "base_url, request (method, target) and response are required"};
    }
    if (request->header_count > 0 &&
        (request->header_names == nullptr || request->header_values == nullptr)) {
      return Error{Errc::invalid_argument, "header_count > 0 without header arrays"};
    }
#ifdef FIELDSYNC_C_HAS_HTTP
    auto transport = fieldsync::make_http_transport({base_url, {}});
    if (!transport.ok()) {
      return transport.error();
    }
    fieldsync::HttpRequest http;
    http.method = request->method;
    http.target = request->target;
    for (std::size_t i = 0; i < request->header_count; ++i) {
      const char* name = request->header_names[i];
      const char* value = request->header_values[i];
      http.headers.emplace_back(name != nullptr ? name : "", value != nullptr ? value : "");
    }
    if (request->body != nullptr) {
      http.body.assign(request->body, request->body_size);
    }
    const std::int64_t timeout =
        request->timeout_ms > 0 ? request->timeout_ms : kDefaultHttpTimeoutMs;
    auto answer = (*transport)->send(http, std::chrono::milliseconds(timeout));
    if (!answer.ok()) {
      return answer.error();
    }
    response->value = std::move(answer).value();
    return {};
#else
    return Error{Errc::invalid_argument, "this library was built without its HTTP client"};
#endif
  });
}

char* fieldsync_store_login(fieldsync_store* store, const char* username, const char* password,
                            fieldsync_error* out_error) noexcept {
  char* out = nullptr;
  with_store(store, out_error, [&](fieldsync_store& s) -> Result<void> {
    if (auto ok = require_text(username, "username"); !ok.ok()) {
      return ok;
    }
    if (auto ok = require_text(password, "password"); !ok.ok()) {
      return ok;
    }
    std::unique_ptr<fieldsync::Transport> scratch;
    auto transport = transport_for(s, scratch);
    if (!transport.ok()) {
      return transport.error();
    }
    auto login = fieldsync::login(*s.store, **transport, username, password);
    if (!login.ok()) {
      return login.error();
    }
    out = dup_json({{"user", login->user.to_json()},
                    {"expires_at", login->expires_at},
                    {"features", login->features}});
    return {};
  });
  return out;
}

fieldsync_cancel* fieldsync_cancel_open(fieldsync_error* out_error) noexcept {
  fieldsync_cancel* out = nullptr;
  guarded(out_error, [&]() -> Result<void> {
    out = new fieldsync_cancel();
    return {};
  });
  return out;
}

void fieldsync_cancel_request(fieldsync_cancel* cancel) noexcept {
  if (cancel != nullptr) {
    cancel->requested.store(true);
  }
}

bool fieldsync_cancel_is_requested(const fieldsync_cancel* cancel) noexcept {
  return cancel != nullptr && cancel->requested.load();
}

void fieldsync_cancel_close(fieldsync_cancel* cancel) noexcept {
  delete cancel;
}

bool fieldsync_store_sync(fieldsync_store* store, const char* options_json,
                          fieldsync_progress_fn progress_fn, void* progress_ctx,
                          const fieldsync_cancel* cancel, fieldsync_sync_progress* out_result,
                          fieldsync_error* out_error) noexcept {
  return with_store(store, out_error, [&](fieldsync_store& s) -> Result<void> {
    fieldsync::SyncOptions options;
    if (auto ok = parse_sync_options(options_json, options); !ok.ok()) {
      return ok;
    }
    std::unique_ptr<fieldsync::Transport> scratch;
    auto transport = transport_for(s, scratch);
    if (!transport.ok()) {
      return transport.error();
    }
    if (cancel != nullptr) {
      options.cancel = &cancel->requested;
    }
    if (progress_fn != nullptr) {
      options.on_progress = [progress_fn, progress_ctx](const fieldsync::SyncProgress& p) {
        const fieldsync_sync_progress c = to_c(p);
        progress_fn(progress_ctx, &c);
      };
    }
    auto result = fieldsync::sync(*s.store, **transport, options);
    if (!result.ok()) {
      return result.error();
    }
    if (out_result != nullptr) {
      *out_result = to_c(*result);
    }
    return {};
  });
}

}  // extern "C"
