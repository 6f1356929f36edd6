// Implementation of the end-to-end test helpers (e2e_fixture.hpp).
#include "e2e_fixture.hpp"

#include <set>

#include <catch2/catch.hpp>

#include "fieldsync/form.hpp"
#include "fieldsync/hlc.hpp"

namespace fieldsync::testing {
namespace {

constexpr std::chrono::seconds kTimeout{20};

std::string forms_dir() {
#ifdef FIELDSYNC_SOURCE_DIR
  return std::string(FIELDSYNC_SOURCE_DIR) + "/forms";
#else
  return "forms";
#endif
}

}  // namespace

ServerOptions standard_server_options() {
  ServerOptions o;
  o.users = {
      {"admin", "admin", {}, {}},
      {"officer.bengkalis", "officer", {kKecBengkalis}, {}},
      {"officer.bengkalis2", "officer", {kKecBengkalis}, {}},
      {"officer.bantan", "officer", {kKecBantan}, {}},
  };
  o.forms = {forms_dir() + "/kla-desa.json"};
  return o;
}

std::unique_ptr<ServerProcess> start_server(ServerOptions options) {
  auto server = std::make_unique<ServerProcess>(std::move(options));
  auto started = server->start();
  if (!started)
    FAIL("cannot start " << ServerProcess::binary_path() << ": " << started.error().to_string());
  return server;
}

std::string village(const std::string& kec, int n) {
  std::string num = std::to_string(n);
  return kec + ".20" + (num.size() < 2 ? "0" + num : num);
}

Client::Client(const std::string& base_url, const std::string& ca_file) {
  auto t = make_http_transport(HttpTransportOptions{base_url, ca_file});
  if (!t) FAIL("transport: " << t.error().to_string());
  transport_ = std::move(t).value();
}

Result<HttpResponse> Client::send(const std::string& method, const std::string& target,
                                  const std::string& body, const std::string& token,
                                  std::vector<std::pair<std::string, std::string>> headers) {
  HttpRequest req{method, target, std::move(headers), body};
  if (!token.empty()) req.headers.emplace_back("Authorization", "Bearer " + token);
  return transport_->send(req, kTimeout);
}

std::string Client::login(const std::string& user, const std::string& password,
                          const std::string& device_id) {
  auto res =
      send("POST", "/v1/login",
           json{{"username", user}, {"password", password}, {"device_id", device_id}}.dump());
  REQUIRE(res.ok());
  INFO(res->body);
  REQUIRE(res->status == 200);
  return json::parse(res->body).at("token").get<std::string>();
}

json Client::get(const std::string& target, const std::string& token) {
  auto res = send("GET", target, {}, token, {});
  if (!res) FAIL("GET " << target << ": " << res.error().to_string());
  INFO("GET " << target << " -> " << res->status << " " << res->body);
  REQUIRE(res->status == 200);
  return json::parse(res->body);
}

json Client::post(const std::string& target, const json& body, const std::string& token,
                  int status) {
  auto res = send("POST", target, body.dump(), token);
  if (!res) FAIL("POST " << target << ": " << res.error().to_string());
  INFO("POST " << target << " -> " << res->status << " " << res->body);
  REQUIRE(res->status == status);
  return json::parse(res->body);
}

std::map<std::string, json> Client::records(const std::string& token, const std::string& scope) {
  std::map<std::string, json> out;
  std::int64_t since = 0;
  for (int page = 0; page < 10000; ++page) {
    std::string target = "/v1/records?since=" + std::to_string(since) + "&limit=100";
    if (!scope.empty()) target += "&scope=" + scope;
    json body = get(target, token);
    for (const auto& r : body.at("records")) out[r.at("id").get<std::string>()] = r;
    const std::int64_t cursor = body.at("cursor").get<std::int64_t>();
    if (!body.at("more").get<bool>()) break;
    REQUIRE(cursor > since);
    since = cursor;
  }
  return out;
}

std::vector<json> Client::pull_all(const std::string& token, const std::string& device_id,
                                   std::int64_t page) {
  std::vector<json> out;
  std::int64_t since = 0;
  for (int n = 0; n < 100000; ++n) {
    json body = post("/v1/sync",
                     json{{"device_id", device_id},
                          {"changes", json::array()},
                          {"since", since},
                          {"limit", page}},
                     token);
    for (const auto& e : body.at("changes")) out.push_back(e);
    const std::int64_t cursor = body.at("cursor").get<std::int64_t>();
    if (!body.at("more").get<bool>()) break;
    REQUIRE(cursor > since);
    since = cursor;
  }
  return out;
}

Device::Device(const std::string& store_path, const std::string& base_url) {
  StoreOptions o;
  o.path = store_path;
  auto s = Store::open(o);
  if (!s) FAIL("open store " << store_path << ": " << s.error().to_string());
  store_ = std::move(s).value();
  auto t = make_http_transport(HttpTransportOptions{base_url, {}});
  if (!t) FAIL("transport: " << t.error().to_string());
  transport_ = std::move(t).value();
}

void Device::login(const std::string& user, const std::string& password) {
  auto r = fieldsync::login(*store_, *transport_, user, password, kTimeout);
  if (!r) FAIL("login " << user << ": " << r.error().to_string());
  user_ = user;
  auto token = store_->setting("token");
  REQUIRE(token.ok());
  REQUIRE(token->has_value());
  HttpRequest req{"GET", "/v1/forms", {{"Authorization", "Bearer " + **token}}, {}};
  auto res = transport_->send(req, kTimeout);
  REQUIRE(res.ok());
  INFO(res->body);
  REQUIRE(res->status == 200);
  const json forms = json::parse(res->body);
  for (const auto& f : forms.at("forms")) {
    auto form = Form::parse(f);
    if (!form) FAIL("form from the server: " << form.error().to_string());
    auto imported = store_->import_form(*form);
    if (!imported) FAIL("import: " << imported.error().to_string());
  }
}

std::string Device::create(const std::string& scope, json fields) {
  PutRequest p;
  p.form = kKlaForm;
  p.scope = scope;
  p.fields = std::move(fields);
  auto id = store_->put(p);
  if (!id) FAIL("put: " << id.error().to_string());
  return *id;
}

void Device::edit(const std::string& record, json fields) {
  PutRequest p;
  p.record = record;
  p.fields = std::move(fields);
  auto id = store_->put(p);
  if (!id) FAIL("edit " << record << ": " << id.error().to_string());
}

SyncOptions Device::quick_options() {
  SyncOptions o;
  o.attempt_timeout = std::chrono::seconds(20);
  o.max_attempts = 3;
  o.backoff_initial = std::chrono::milliseconds(20);
  o.backoff_max = std::chrono::milliseconds(200);
  return o;
}

Result<SyncProgress> Device::try_sync(SyncOptions options) {
  return fieldsync::sync(*store_, *transport_, options);
}

SyncProgress Device::sync(SyncOptions options) {
  auto r = try_sync(std::move(options));
  if (!r) FAIL("sync of " << user_ << ": " << r.error().to_string());
  return *r;
}

RecordView Device::get(const std::string& record) const {
  auto r = store_->get(record);
  if (!r) FAIL("get " << record << ": " << r.error().to_string());
  return *r;
}

std::vector<RecordView> Device::records() const {
  RecordQuery q;
  q.include_deleted = true;
  auto r = store_->list(q);
  if (!r) FAIL("list: " << r.error().to_string());
  return *r;
}

void sync_until_quiet(const std::vector<Device*>& devices, int max_passes) {
  for (int pass = 0; pass < max_passes; ++pass) {
    bool quiet = true;
    for (Device* d : devices) {
      const SyncProgress p = d->sync();
      if (p.sent != 0 || p.received != 0) quiet = false;
    }
    if (quiet) return;
  }
  FAIL("devices still exchanging changes after " << max_passes << " passes");
}

json server_value(const json& record, const std::string& field) {
  const json& fields = record.at("fields");
  auto it = fields.find(field);
  if (it == fields.end()) return nullptr;
  if (it->is_object() && it->contains("value")) return it->at("value");
  return *it;
}

void check_device_matches_server(Device& device,
                                 const std::map<std::string, json>& server_records) {
  std::map<std::string, RecordView> local;
  for (auto& r : device.records()) local.emplace(r.id, std::move(r));
  INFO("device of " << device.user());
  CHECK(local.size() == server_records.size());
  for (const auto& [id, srv] : server_records) {
    INFO("record " << id << " on the server: " << srv.dump());
    auto it = local.find(id);
    if (it == local.end()) {
      FAIL_CHECK("missing on the device");
      continue;
    }
    const RecordView& mine = it->second;
    CHECK(mine.form == srv.at("form").get<std::string>());
    CHECK(mine.scope == srv.at("scope").get<std::string>());
    CHECK(mine.deleted == srv.at("deleted").get<bool>());
    CHECK_FALSE(mine.dirty);
    std::set<std::string> names;
    for (const auto& [name, _] : mine.fields) names.insert(name);
    for (const auto& [name, _] : srv.at("fields").items()) names.insert(name);
    for (const auto& name : names) {
      const json theirs = server_value(srv, name);
      auto f = mine.fields.find(name);
      const json ours = f == mine.fields.end() ? json(nullptr) : f->second.value;
      INFO("field " << name << ": device " << ours.dump() << ", server " << theirs.dump());
      CHECK(values_equal(ours, theirs));
    }
  }
  for (const auto& [id, _] : local) {
    if (server_records.count(id) == 0)
      FAIL_CHECK("record " << id << " on the device but not on the server");
  }
}

json village_fields(const std::string& code, json extra) {
  json f = {{"desa_code", code}, {"period", "2026"}};
  f.update(extra);
  return f;
}

json raw_change(const std::string& device, int counter, const std::string& record,
                const std::string& scope, json fields, json base) {
  json c = {{"id", device + ":" + std::to_string(counter)},
            {"record", record},
            {"form", kKlaForm},
            {"op", "upsert"},
            {"fields", std::move(fields)},
            {"base", std::move(base)},
            {"hlc", HlcClock().now().to_string()}};
  if (!scope.empty()) c["scope"] = scope;
  return c;
}

}  // namespace fieldsync::testing
