// The administrators' read and bulk endpoints added by issue #4: record history,
// bulk conflict resolution, the KLA report and CSV export (protocol.md "Records,
// history, quarantine" and "Devices, reports, export"). Router dispatches here
// after authentication; answers are plain status + content type + body.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "server_store.hpp"
#include "writer.hpp"

namespace fieldsync::server {

struct AdminReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

using QueryParams = std::map<std::string, std::string>;

class AdminApi {
 public:
  // `store` and `writer` must outlive this object. Thread-safe like Router.
  AdminApi(ServerStore& store, Writer& writer) : store_(store), writer_(writer) {}

  // GET /v1/records/{id}/history: 404 when the record is unknown or outside the
  // caller's scopes.
  AdminReply history(const Caller& caller, const std::string& record);
  // POST /v1/conflicts/resolve-bulk (admins only; the router checks the role).
  AdminReply resolve_bulk(const Caller& admin, const json& body, std::int64_t now_ms);
  // GET /v1/reports/kla: admins everywhere, officers within their scopes (403
  // for a `scope` outside them).
  AdminReply kla_report(const Caller& caller, const QueryParams& query);
  // GET /v1/export: one CSV row per live record of a form.
  AdminReply export_csv(const Caller& caller, const QueryParams& query);

  // Revocation (issue #5; admins only, the router checks the role). POST
  // /v1/users/{name}/revoke disables the user and ends its tokens; .../reinstate
  // enables it again. POST /v1/devices/{id}/revoke ends the device's tokens and
  // refuses its logins and syncs until .../reinstate. 404 for an unknown user or
  // device; 409 `self_revocation` for the caller's own user or device.
  AdminReply revoke_user(const Caller& admin, const std::string& name);
  AdminReply reinstate_user(const Caller& admin, const std::string& name);
  AdminReply revoke_device(const Caller& admin, const std::string& device_id, std::int64_t now_ms);
  AdminReply reinstate_device(const Caller& admin, const std::string& device_id);

 private:
  ServerStore& store_;
  Writer& writer_;
};

}  // namespace fieldsync::server
