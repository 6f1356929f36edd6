// Shared pieces of the end-to-end tests: the real server with a standard cast of
// users and the KLA form, a raw JSON client over the HTTP transport, devices
// (a Store on a real SQLite file plus a transport), and the convergence check.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fieldsync/http_transport.hpp"
#include "fieldsync/store.hpp"
#include "fieldsync/sync.hpp"
#include "support/server_process.hpp"

namespace fieldsync::testing {

inline constexpr const char* kKecBengkalis = "14.03.01";
inline constexpr const char* kKecBantan = "14.03.02";
inline constexpr const char* kKlaForm = "kla-desa";

// admin (every scope), officer.bengkalis and officer.bengkalis2 (14.03.01),
// officer.bantan (14.03.02); the KLA form published.
ServerOptions standard_server_options();
// Starts a server (REQUIREs success; skips nothing: a missing binary fails).
std::unique_ptr<ServerProcess> start_server(ServerOptions options = standard_server_options());

// A village code of kecamatan `kec`: "14.03.01" + ".20NN".
std::string village(const std::string& kec, int n);

// JSON over HTTP through fieldsync::http, for what the sync engine does not do
// (admin calls, raw and malformed requests).
class Client {
 public:
  explicit Client(const std::string& base_url, const std::string& ca_file = {});

  Result<HttpResponse> send(const std::string& method, const std::string& target,
                            const std::string& body = {}, const std::string& token = {},
                            std::vector<std::pair<std::string, std::string>> headers = {
                                {"Content-Type", "application/json"}});
  // Logs in (REQUIRE 200) and returns the token.
  std::string login(const std::string& user, const std::string& password,
                    const std::string& device_id = "e2e-client");
  // GET, REQUIRE 200, parse.
  json get(const std::string& target, const std::string& token);
  // POST JSON, REQUIRE `status`, parse.
  json post(const std::string& target, const json& body, const std::string& token,
            int status = 200);

  // Every record the token may see (GET /v1/records, all pages), by id.
  std::map<std::string, json> records(const std::string& token, const std::string& scope = {});
  // The whole log the token may see (POST /v1/sync pulls from 0, all pages).
  std::vector<json> pull_all(const std::string& token, const std::string& device_id,
                             std::int64_t page = 200);

 private:
  std::unique_ptr<Transport> transport_;
};

// A device: a store on a file, a transport, a logged-in officer.
class Device {
 public:
  Device(const std::string& store_path, const std::string& base_url);

  // Logs in and imports the forms the server publishes (REQUIREs success).
  void login(const std::string& user, const std::string& password);
  // put() of a new record in `scope`; returns its id.
  std::string create(const std::string& scope, json fields);
  void edit(const std::string& record, json fields);
  Result<SyncProgress> try_sync(SyncOptions options = quick_options());
  SyncProgress sync(SyncOptions options = quick_options());  // REQUIREs success
  RecordView get(const std::string& record) const;
  std::vector<RecordView> records() const;  // tombstones included

  static SyncOptions quick_options();

  Store& store() { return *store_; }
  Transport& transport() { return *transport_; }
  const std::string& user() const { return user_; }

 private:
  std::unique_ptr<Store> store_;
  std::unique_ptr<Transport> transport_;
  std::string user_;
};

// Syncs the devices round-robin until one full pass sends and receives nothing.
void sync_until_quiet(const std::vector<Device*>& devices, int max_passes = 6);

// The device's visible data equals the server's records (from Client::records
// with the device user's token): same ids, scopes, forms, tombstones and field
// values. Uses CHECK, so every difference is reported.
void check_device_matches_server(Device& device, const std::map<std::string, json>& server_records);

// Value of `field` in a server record JSON (null when absent).
json server_value(const json& record, const std::string& field);

// KLA fields of a village: its code and period 2026, plus `extra`.
json village_fields(const std::string& code, json extra = json::object());
// A change as a device sends it, with id "<device>:<counter>" and a fresh hlc;
// `scope` empty leaves the member out.
json raw_change(const std::string& device, int counter, const std::string& record,
                const std::string& scope, json fields, json base = json::object());

}  // namespace fieldsync::testing
