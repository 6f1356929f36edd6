// The reference server for device tests (reference_server.hpp): protocol.md's
// merge rule in its plainest form.
#include "reference_server.hpp"

#include <algorithm>

#include "fieldsync/hlc.hpp"
#include "fieldsync/ids.hpp"

namespace fieldsync::testing {
namespace {

HttpResponse json_response(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.headers = {{"Content-Type", "application/json"}};
  r.body = body.dump();
  return r;
}

ChangeResult rejected(const std::string& id, std::string code, std::string message,
                      std::string field = {}) {
  ChangeResult r;
  r.id = id;
  r.status = "rejected";
  r.error = RejectReason{std::move(code), std::move(message), std::move(field)};
  return r;
}

}  // namespace

ReferenceServer::ReferenceServer(std::vector<Form> forms) {
  for (auto& f : forms) forms_.emplace(f.id, std::move(f));
}

std::vector<std::int64_t> ReferenceServer::open_conflicts() const {
  std::vector<std::int64_t> out;
  for (const auto& [id, c] : conflicts)
    if (c.open) out.push_back(id);
  return out;
}

std::int64_t ReferenceServer::open_or_join(const std::string& kind, const std::string& record,
                                           const std::string& field, Candidate candidate) {
  for (auto& [id, c] : conflicts) {
    if (c.open && c.kind == kind && c.record == record && c.field == field) {
      c.candidates.push_back(std::move(candidate));
      return id;
    }
  }
  Conflict c;
  c.id = next_conflict_++;
  c.kind = kind;
  c.record = record;
  c.field = field;
  c.candidates.push_back(std::move(candidate));
  conflicts.emplace(c.id, c);
  return c.id;
}

Error ReferenceServer::check(const Change& c) const {
  if (reject_if && reject_if(c)) return Error(Errc::validation, "refused by the test", "");
  if (!Hlc::parse(c.hlc)) return Error(Errc::validation, "bad hlc", "hlc");
  auto rec = records.find(c.record);
  if (rec != records.end()) {
    if (!c.form.empty() && c.form != rec->second.form)
      return Error(Errc::validation, "form cannot change", "form");
    if (!c.scope.empty() && c.scope != rec->second.scope)
      return Error(Errc::validation, "scope cannot change", "scope");
  }
  if (c.op == "upsert") {
    auto form = forms_.find(rec != records.end() ? rec->second.form : c.form);
    if (form != forms_.end()) {
      if (auto r = form->second.validate_fields(c.fields, rec == records.end()); !r)
        return r.error();
    }
  }
  return Error(Errc::ok, "");
}

ChangeResult ReferenceServer::process(const std::string& device_id, const Change& c) {
  json content = c.to_json();
  if (auto seen = seen_content_.find(c.id); seen != seen_content_.end()) {
    if (seen->second != content) return rejected(c.id, "id_reused", "change id reused");
    ChangeResult r = results.at(c.id);
    r.replayed = true;
    return r;
  }
  seen_content_[c.id] = content;
  ++processed[c.id];
  if (Error e = check(c); e.code != Errc::ok) {
    auto r = rejected(c.id, std::string(errc_name(e.code)), e.message, e.field);
    results[c.id] = r;
    return r;
  }

  ChangeResult result;
  result.id = c.id;
  LogEntry entry;
  entry.record = c.record;
  entry.origin = c.id;
  entry.author = "officer";
  entry.device = device_id;
  entry.hlc = c.hlc;
  entry.received_at = "2026-01-01T00:00:00.000Z";
  entry.op = "upsert";

  auto base = [&](const std::string& f) {
    auto it = c.base.find(f);
    return it == c.base.end() ? std::int64_t{0} : it->second;
  };
  auto it = records.find(c.record);
  bool known = it != records.end();
  std::vector<ConflictRef> opened;

  if (!known) {
    Record r;
    r.form = c.form;
    r.form_version = c.form_version.value_or(1);
    r.scope = c.scope;
    it = records.emplace(c.record, std::move(r)).first;
  }
  Record& rec = it->second;
  std::int64_t s = ++seq;
  result.seq = s;

  if (c.op == "delete") {
    entry.op = "delete";
    if (!known || rec.deleted || base("") >= rec.version) {
      rec.deleted = true;
      rec.version = s;
    } else {
      entry.op = "upsert";
      std::int64_t id = open_or_join("delete", c.record, "", Candidate{c.id, nullptr, "delete"});
      opened.push_back(ConflictRef{id, "delete", "", ""});
    }
  } else if (rec.deleted) {
    std::int64_t highest = 0;
    for (const auto& [k, v] : c.base) highest = std::max(highest, v);
    if (highest >= rec.version) {
      --seq;
      auto r = rejected(c.id, "deleted", "the record was deleted");
      results[c.id] = r;
      return r;
    }
    std::int64_t id = open_or_join("delete", c.record, "", Candidate{c.id, c.fields, "upsert"});
    opened.push_back(ConflictRef{id, "delete", "", ""});
    for (const auto& [f, v] : c.fields.items()) {
      auto cur = rec.fields.find(f);
      result.versions[f] = cur == rec.fields.end() ? 0 : cur->second.version;
    }
  } else {
    for (const auto& [f, v] : c.fields.items()) {
      FieldValue& cur = rec.fields[f];
      if (!known || base(f) == cur.version) {
        cur.value = v;
        cur.version = s;
        cur.device = device_id;
        entry.fields[f] = v;
        rec.version = s;
      } else if (!values_equal(v, cur.value)) {
        if (cur.device == device_id) ++self_conflicts;
        std::int64_t id = open_or_join("field", c.record, f, Candidate{c.id, v, "upsert"});
        opened.push_back(ConflictRef{id, "field", f, ""});
      }
      result.versions[f] = cur.version;
    }
  }
  entry.seq = s;
  entry.form = rec.form;
  entry.form_version = rec.form_version;
  entry.scope = rec.scope;
  for (auto ref : opened) {
    result.conflicts.push_back(ref);
    ref.status = "open";
    entry.conflicts.push_back(ref);
  }
  result.status = opened.empty() ? "applied" : "conflict";
  log.push_back(entry);
  results[c.id] = result;
  return result;
}

SyncResponse ReferenceServer::sync(const std::string& device_id, const std::vector<Change>& changes,
                                   std::int64_t since, std::int64_t limit,
                                   std::int64_t omit_own_through) {
  SyncResponse resp;
  for (const auto& c : changes) resp.results.push_back(process(device_id, c));
  auto first = std::upper_bound(log.begin(), log.end(), since,
                                [](std::int64_t s, const LogEntry& e) { return s < e.seq; });
  std::int64_t last = since;  // the last entry returned or left out
  for (auto e = first; e != log.end(); ++e) {
    if (static_cast<std::int64_t>(resp.changes.size()) >= limit) {
      resp.more = true;
      break;
    }
    auto origin = ChangeId::parse(e->origin);
    if (!(origin && origin->device_id == device_id && origin->counter <= omit_own_through))
      resp.changes.push_back(*e);
    last = e->seq;
  }
  resp.cursor = resp.more ? last : seq;
  resp.cursor = std::max(resp.cursor, since);
  return resp;
}

void ReferenceServer::resolve(std::int64_t conflict_id, bool keep_record,
                              std::optional<json> value) {
  Conflict& c = conflicts.at(conflict_id);
  if (!c.open) return;
  Record& rec = records.at(c.record);
  if (c.kind == "field" && rec.deleted) return;  // 409 deleted: stays open
  LogEntry entry;
  entry.seq = ++seq;
  entry.record = c.record;
  entry.form = rec.form;
  entry.form_version = rec.form_version;
  entry.scope = rec.scope;
  entry.origin = "admin:test:" + std::to_string(c.id);
  entry.author = "admin";
  entry.hlc = "2026-01-01T00:00:00.000Z/0000";
  entry.received_at = "2026-01-01T00:00:00.000Z";
  entry.op = "upsert";
  if (c.kind == "field") {
    FieldValue& f = rec.fields[c.field];
    f.value = value.value_or(f.value);
    f.version = entry.seq;
    f.device = "admin";
    entry.fields[c.field] = f.value;
  } else if (keep_record) {
    if (rec.deleted) {
      entry.op = "revive";
      rec.deleted = false;
      for (auto& [name, f] : rec.fields) {
        f.version = entry.seq;
        f.device = "admin";
        entry.fields[name] = f.value;
      }
    }
  } else {
    entry.op = "delete";
    rec.deleted = true;
  }
  rec.version = entry.seq;
  entry.conflicts.push_back(ConflictRef{c.id, c.kind, c.field, "resolved"});
  c.open = false;
  log.push_back(entry);
}

HttpResponse ReferenceServer::handle(const HttpRequest& request) {
  json body = json::parse(request.body, nullptr, false);
  if (request.method == "POST" && request.target == "/v1/login") {
    if (!body.is_object() || body.value("password", "") == "wrong")
      return json_response(401, error_body("unauthorized", "wrong user name or password"));
    LoginResponse l;
    l.token = token;
    l.expires_at = "2099-01-01T00:00:00.000Z";
    l.user = UserInfo{body.value("username", ""), "officer", {"14"}};
    if (offer_omit_own) l.features = {"omit_own"};
    return json_response(200, l.to_json());
  }
  if (request.method == "POST" && request.target == "/v1/sync") {
    std::string auth;
    for (const auto& [k, v] : request.headers)
      if (k == "Authorization") auth = v;
    if (auth != "Bearer " + token)
      return json_response(401, error_body("unauthorized", "bad token"));
    auto shape = decode_sync_request_shape(body);
    if (!shape) return json_response(400, error_body("bad_request", shape.error().message));
    if (shape->since > seq) return json_response(409, error_body("cursor_ahead", "cursor ahead"));
    std::vector<Change> changes;
    for (const auto& raw : shape->raw_changes) {
      auto c = decode_change(raw);
      if (!c) return json_response(400, error_body("bad_request", c.error().to_string()));
      changes.push_back(std::move(c).value());
    }
    return json_response(200, sync(shape->device_id, changes, shape->since, shape->limit,
                                   offer_omit_own ? shape->omit_own_through : 0)
                                  .to_json());
  }
  return json_response(404, error_body("not_found", "no such endpoint"));
}

}  // namespace fieldsync::testing
