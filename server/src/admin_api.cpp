// History, bulk resolution, the KLA report and CSV export (admin_api.hpp). Reads
// go through ServerStore's read methods (committed data only); bulk resolution
// runs each conflict's resolution as its own writer job, exactly like
// POST /v1/conflicts/{id}/resolve, so one failure never undoes another.
#include "admin_api.hpp"

#include <algorithm>
#include <set>

#include "auth.hpp"
#include "csv.hpp"
#include "fieldsync/hlc.hpp"
#include "fieldsync/ids.hpp"
#include "resolve.hpp"

namespace fieldsync::server {
namespace {

constexpr std::int64_t kPage = 1000;
constexpr const char* kDefaultReportForm = "kla-desa";

AdminReply json_reply(int status, const json& body) {
  return {status, "application/json", body.dump(-1, ' ', false, json::error_handler_t::replace)};
}

AdminReply error_reply(int status, std::string_view code, std::string_view message,
                       std::string_view field = {}) {
  return json_reply(status, error_body(code, message, field));
}

AdminReply store_error(const Error& e) {
  if (e.code == Errc::busy || e.code == Errc::io || e.code == Errc::corrupt ||
      e.code == Errc::schema_too_new)
    return error_reply(503, "unavailable", "the store cannot be used: " + e.message);
  return error_reply(500, "internal", "internal error: " + e.message);
}

std::string param(const QueryParams& q, const char* key) {
  auto it = q.find(key);
  return it == q.end() ? std::string() : it->second;
}

// The first `groups` dot-separated groups of a region code ("14.03.01.2001", 3 ->
// "14.03.01"); the code itself when it has fewer.
std::string code_prefix(const std::string& code, int groups) {
  std::size_t pos = 0;
  for (int i = 0; i < groups; ++i) {
    pos = code.find('.', pos);
    if (pos == std::string::npos) return code;
    if (i + 1 < groups) ++pos;
  }
  return code.substr(0, pos);
}

json candidate_json(const Candidate& k, bool duplicate) {
  json j = {{"value", k.value},
            {"op", k.op},
            {"change", k.change},
            {"author", k.author},
            {"device", k.device},
            {"hlc", k.hlc},
            {"received_at", k.received_at},
            {"form_version", k.form_version}};
  if (duplicate) j["record"] = k.record;
  return j;
}

json conflict_summary(const ConflictRow& c) {
  json candidates = json::array();
  for (const auto& k : c.candidates)
    candidates.push_back(candidate_json(k, c.kind == "duplicate_record"));
  json j = {
      {"id", c.id},         {"kind", c.kind},           {"record", c.record},
      {"form", c.form},     {"scope", c.scope},         {"field", c.field},
      {"status", c.status}, {"opened_at", c.opened_at}, {"candidates", std::move(candidates)}};
  if (c.kind == "duplicate_record") j["records"] = c.records;
  if (!c.resolution.is_null()) j["resolution"] = c.resolution;
  return j;
}

// Every open or resolved conflict matching `q`, all pages.
Result<std::vector<ConflictRow>> all_conflicts(ServerStore& store, ConflictQuery q) {
  std::vector<ConflictRow> out;
  q.limit = kPage;
  for (;;) {
    auto page = store.conflicts(q);
    if (!page) return page.error();
    for (auto& c : page->conflicts) {
      q.after = std::max(q.after, c.id);
      out.push_back(std::move(c));
    }
    if (!page->more || page->conflicts.empty()) break;
  }
  return out;
}

// Every record (tombstones included) matching `q`, all pages.
Result<std::vector<RecordState>> all_records(ServerStore& store, RecordsQuery q) {
  std::vector<RecordState> out;
  q.limit = kPage;
  for (;;) {
    auto page = store.records(q);
    if (!page) return page.error();
    for (auto& r : page->records) out.push_back(std::move(r));
    if (!page->more || page->cursor <= q.since) break;
    q.since = page->cursor;
  }
  return out;
}

// One export cell (protocol.md: select_multiple joined by spaces, geopoint as
// "lat lon", null as empty).
std::string cell(const json& v) {
  if (v.is_null()) return {};
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_array()) {
    std::string out;
    for (const auto& e : v) {
      if (!out.empty()) out += ' ';
      out += e.is_string() ? e.get<std::string>() : e.dump();
    }
    return out;
  }
  if (v.is_object() && v.contains("lat") && v.contains("lon"))
    return v["lat"].dump() + " " + v["lon"].dump();
  return v.dump();
}

std::string_view aggregate_name(Aggregate a) {
  switch (a) {
    case Aggregate::sum:
      return "sum";
    case Aggregate::count_true:
      return "count_true";
    case Aggregate::share_true:
      return "share_true";
    case Aggregate::none:
      break;
  }
  return "none";
}

// Running totals of one field over the villages of one area.
struct FieldTotals {
  std::int64_t with_value = 0;
  std::int64_t true_count = 0;
  std::int64_t int_sum = 0;
  double real_sum = 0;
  bool real = false;
};

struct AreaTotals {
  std::string level;  // "regency" | "kecamatan"
  std::int64_t villages = 0;
  std::int64_t open_conflicts = 0;
  std::map<std::string, FieldTotals> fields;
  std::map<int, std::int64_t> indicator_with_value;
  std::map<int, std::int64_t> indicator_conflicts;
};

json aggregate_value(const FieldDef& f, const FieldTotals& t) {
  switch (f.aggregate) {
    case Aggregate::sum:
      return t.real ? json(t.real_sum + static_cast<double>(t.int_sum)) : json(t.int_sum);
    case Aggregate::count_true:
      return t.true_count;
    case Aggregate::share_true:
      if (t.with_value == 0) return nullptr;
      return static_cast<double>(t.true_count) / static_cast<double>(t.with_value);
    case Aggregate::none:
      break;
  }
  return nullptr;
}

// The bulk rule's resolution body for one conflict, or a reason to skip it.
struct BulkChoice {
  json action;  // null = skipped
  std::string skipped;
};

}  // namespace

AdminReply AdminApi::history(const Caller& caller, const std::string& record) {
  auto rec = store_.record(record);
  if (!rec) return store_error(rec.error());
  if (!*rec || !caller.covers((*rec)->row.scope))
    return error_reply(404, "not_found", "no record " + record);
  const std::string scope = (*rec)->row.scope;

  ConflictQuery cq;
  cq.record = record;
  auto conflicts = all_conflicts(store_, cq);
  if (!conflicts) return store_error(conflicts.error());
  // What each change offered that did not win: the candidates, by change id.
  std::map<std::string, json> offered;
  for (const auto& c : *conflicts)
    for (const auto& k : c.candidates) {
      if (c.kind == "duplicate_record" && k.record != record) continue;
      auto& list = offered[k.change];
      if (list.is_null()) list = json::array();
      list.push_back({{"conflict", c.id},
                      {"kind", c.kind},
                      {"field", c.field},
                      {"value", k.value},
                      {"op", k.op}});
    }

  json entries = json::array();
  ScopeFilter filter{false, {scope}};
  std::int64_t since = 0;
  for (;;) {
    auto page = store_.pull(filter, since, kPage);
    if (!page) return store_error(page.error());
    for (const auto& e : page->entries) {
      if (e.record != record) continue;
      json j = e.to_json();
      if (auto it = offered.find(e.origin); it != offered.end()) j["candidates"] = it->second;
      entries.push_back(std::move(j));
    }
    if (!page->more || page->cursor <= since) break;
    since = page->cursor;
  }

  json rejected = json::array();
  QuarantineQuery qq;
  qq.limit = kPage;
  for (;;) {
    auto page = store_.quarantine(qq);
    if (!page) return store_error(page.error());
    for (const auto& r : page->rows) {
      qq.after = std::max(qq.after, r.id);
      if (!r.change.is_object()) continue;
      auto it = r.change.find("record");
      if (it == r.change.end() || !it->is_string() || it->get<std::string>() != record) continue;
      json error = {{"code", r.reason.code}, {"message", r.reason.message}};
      if (!r.reason.field.empty()) error["field"] = r.reason.field;
      rejected.push_back({{"id", r.id},
                          {"change_id", r.change_id},
                          {"device", r.device},
                          {"user", r.user},
                          {"change", r.change},
                          {"error", std::move(error)},
                          {"received_at", r.received_at}});
    }
    if (!page->more || page->rows.empty()) break;
  }

  json conflict_list = json::array();
  for (const auto& c : *conflicts) conflict_list.push_back(conflict_summary(c));
  return json_reply(200, {{"record", record},
                          {"entries", std::move(entries)},
                          {"conflicts", std::move(conflict_list)},
                          {"rejected", std::move(rejected)}});
}

AdminReply AdminApi::resolve_bulk(const Caller& admin, const json& body, std::int64_t now_ms) {
  if (!body.is_object()) return error_reply(400, "bad_request", "the body must be an object");
  ConflictQuery q;
  q.status = "open";
  std::string field_filter;
  bool has_field_filter = false;
  if (auto it = body.find("filter"); it != body.end()) {
    if (!it->is_object())
      return error_reply(400, "validation", "filter must be an object", "filter");
    for (const auto& [key, value] : it->items()) {
      if (!value.is_string())
        return error_reply(400, "validation", "filter members are strings", "filter." + key);
      const std::string v = value.get<std::string>();
      if (key == "form") {
        q.form = v;
      } else if (key == "scope") {
        if (!is_valid_region_code(v))
          return error_reply(400, "validation", "not a region code", "filter.scope");
        q.scope = v;
      } else if (key == "kind") {
        if (v != "field" && v != "delete" && v != "duplicate_record")
          return error_reply(400, "validation", "kind is field, delete or duplicate_record",
                             "filter.kind");
        q.kind = v;
      } else if (key == "field") {
        field_filter = v;
        has_field_filter = true;
      } else {
        return error_reply(400, "validation", "unknown filter member", "filter." + key);
      }
    }
  }
  auto rule_it = body.find("rule");
  if (rule_it == body.end() || !rule_it->is_string())
    return error_reply(400, "validation", "rule is required", "rule");
  const std::string rule = rule_it->get<std::string>();
  if (rule != "server" && rule != "latest_received" && rule != "candidate_from_user")
    return error_reply(400, "validation", "rule is server, latest_received or candidate_from_user",
                       "rule");
  std::string user;
  if (auto it = body.find("user"); it != body.end()) {
    if (!it->is_string()) return error_reply(400, "validation", "user must be text", "user");
    user = it->get<std::string>();
  }
  if (rule == "candidate_from_user" && user.empty())
    return error_reply(400, "validation", "candidate_from_user needs a user", "user");
  bool dry_run = false;
  if (auto it = body.find("dry_run"); it != body.end()) {
    if (!it->is_boolean())
      return error_reply(400, "validation", "dry_run is true or false", "dry_run");
    dry_run = it->get<bool>();
  }
  json note;
  if (auto it = body.find("note"); it != body.end()) {
    if (!it->is_string() || it->get<std::string>().size() > 2000)
      return error_reply(400, "validation", "note is text of at most 2000 bytes", "note");
    note = *it;
  }

  auto conflicts = all_conflicts(store_, q);
  if (!conflicts) return store_error(conflicts.error());

  json results = json::array();
  std::int64_t resolved = 0, skipped = 0, failed = 0, matched = 0;
  for (const auto& c : *conflicts) {
    if (has_field_filter && c.field != field_filter) continue;
    ++matched;
    auto rec = store_.record(c.record);
    if (!rec) return store_error(rec.error());
    const bool deleted = *rec && (*rec)->row.deleted;

    // The server side's time received, for latest_received.
    std::string server_received;
    if (rule == "latest_received" && *rec) {
      std::int64_t seq = (*rec)->row.version;
      if (c.kind == "field") {
        auto f = (*rec)->row.fields.find(c.field);
        seq = f == (*rec)->row.fields.end() ? 0 : f->second.version;
      }
      if (seq > 0) {
        auto e = store_.log_entry(seq);
        if (!e) return store_error(e.error());
        if (*e) server_received = (*e)->received_at;
      }
    }
    // The chosen candidate index, or -1 for the server side.
    std::int64_t chosen = -1;
    bool no_candidate = false;
    if (rule == "latest_received") {
      std::string best = server_received;
      for (std::size_t i = 0; i < c.candidates.size(); ++i)
        if (c.candidates[i].received_at > best) {
          best = c.candidates[i].received_at;
          chosen = static_cast<std::int64_t>(i);
        }
    } else if (rule == "candidate_from_user") {
      for (std::size_t i = 0; i < c.candidates.size(); ++i)
        if (c.candidates[i].author == user) chosen = static_cast<std::int64_t>(i);
      no_candidate = chosen < 0;
    }

    // Unsigned, as a parsed request body would carry it.
    const auto index = static_cast<std::uint64_t>(std::max<std::int64_t>(chosen, 0));
    BulkChoice choice;
    if (no_candidate) {
      choice.skipped = "no candidate from " + user;
    } else if (c.kind == "duplicate_record") {
      if (rule == "server")
        choice.action = {{"keep", "both"}};
      else
        choice.skipped = "rule " + rule + " does not apply to duplicate records";
    } else if (c.kind == "field") {
      choice.action =
          chosen < 0 ? json{{"keep", "server"}} : json{{"keep", "candidate"}, {"candidate", index}};
    } else if (chosen < 0) {
      choice.action = {{"keep", deleted ? "deleted" : "record"}};
    } else if (c.candidates[static_cast<std::size_t>(chosen)].op == "delete") {
      choice.action = {{"keep", "deleted"}};
    } else {
      choice.action = {{"keep", "record"}, {"candidate", index}};
    }

    json item = {{"id", c.id}, {"kind", c.kind}, {"record", c.record}, {"field", c.field}};
    if (choice.action.is_null()) {
      item["status"] = "skipped";
      item["reason"] = choice.skipped;
      ++skipped;
      results.push_back(std::move(item));
      continue;
    }
    item["action"] = choice.action;
    if (dry_run) {
      item["status"] = "would_resolve";
      results.push_back(std::move(item));
      continue;
    }
    json action = choice.action;
    if (!note.is_null()) action["note"] = note;
    ResolveOutcome outcome;
    auto r = writer_.run([&](WriteTxn& txn) -> Result<void> {
      outcome = resolve_conflict(txn, admin, now_ms, c.id, action);
      if (outcome.failure != ResolveFailure::none)
        return Error(Errc::invalid_argument, outcome.message);
      return {};
    });
    if (outcome.failure == ResolveFailure::none && r) {
      item["status"] = "resolved";
      item["seqs"] = outcome.seqs;
      ++resolved;
    } else {
      item["status"] = "failed";
      std::string code = "internal";
      switch (outcome.failure) {
        case ResolveFailure::not_found:
          code = "not_found";
          break;
        case ResolveFailure::already_resolved:
          code = "already_resolved";
          break;
        case ResolveFailure::deleted:
          code = "deleted";
          break;
        case ResolveFailure::validation:
          code = "validation";
          break;
        case ResolveFailure::none:
          code = "unavailable";
          break;
      }
      item["error"] = {{"code", code},
                       {"message", outcome.failure == ResolveFailure::none ? r.error().message
                                                                           : outcome.message}};
      ++failed;
    }
    results.push_back(std::move(item));
  }
  return json_reply(200, {{"dry_run", dry_run},
                          {"rule", rule},
                          {"matched", matched},
                          {"resolved", resolved},
                          {"skipped", skipped},
                          {"failed", failed},
                          {"would_resolve", dry_run ? matched - skipped : 0},
                          {"results", std::move(results)}});
}

AdminReply AdminApi::kla_report(const Caller& caller, const QueryParams& query) {
  const std::string scope = param(query, "scope");
  std::string form_id = param(query, "form");
  if (form_id.empty()) form_id = kDefaultReportForm;
  std::string format = param(query, "format");
  if (format.empty()) format = "json";
  if (format != "json" && format != "csv")
    return error_reply(400, "bad_request", "format must be json or csv");
  if (!scope.empty() && !is_valid_region_code(scope))
    return error_reply(400, "bad_request", "scope must be a region code like 14.03.01");
  if (!scope.empty() && !caller.covers(scope))
    return error_reply(403, "forbidden", "scope " + scope + " is outside your scopes");
  auto form = store_.form(form_id, std::nullopt);
  if (!form) return store_error(form.error());
  if (!*form) return error_reply(404, "not_found", "no form " + form_id);
  const Form& f = **form;

  RecordsQuery rq;
  rq.filter = ScopeFilter::of(caller);
  rq.form = form_id;
  rq.scope_prefix = scope;
  auto records = all_records(store_, rq);
  if (!records) return store_error(records.error());
  ConflictQuery cq;
  cq.status = "open";
  cq.form = form_id;
  cq.scope = scope;
  auto conflicts = all_conflicts(store_, cq);
  if (!conflicts) return store_error(conflicts.error());

  std::map<std::string, AreaTotals> areas;
  auto areas_of = [&](const std::string& code) {
    std::vector<AreaTotals*> out;
    auto& regency = areas[code_prefix(code, 2)];
    regency.level = "regency";
    out.push_back(&regency);
    const std::string kec = code_prefix(code, 3);
    if (kec != code_prefix(code, 2)) {
      auto& k = areas[kec];
      k.level = "kecamatan";
      out.push_back(&k);
    }
    return out;
  };
  for (const auto& r : *records) {
    if (r.row.deleted) continue;
    std::set<int> indicators_with_value;
    for (auto* a : areas_of(r.row.scope)) {
      ++a->villages;
      for (const auto& def : f.fields) {
        if (!def.indicator) continue;
        auto it = r.row.fields.find(def.name);
        if (it == r.row.fields.end() || it->second.value.is_null()) continue;
        const json& v = it->second.value;
        auto& t = a->fields[def.name];
        ++t.with_value;
        if (v.is_boolean() && v.get<bool>()) ++t.true_count;
        if (v.is_number_integer()) {
          t.int_sum += v.get<std::int64_t>();
        } else if (v.is_number()) {
          t.real = true;
          t.real_sum += v.get<double>();
        }
        indicators_with_value.insert(*def.indicator);
      }
      for (int no : indicators_with_value) ++a->indicator_with_value[no];
    }
  }
  for (const auto& c : *conflicts) {
    if (!caller.covers(c.scope)) continue;
    const FieldDef* def = c.kind == "field" ? f.field(c.field) : nullptr;
    for (auto* a : areas_of(c.scope)) {
      ++a->open_conflicts;
      if (def && def->indicator) ++a->indicator_conflicts[*def->indicator];
    }
  }

  // Indicator numbers and names: the form's meta list plus any a field names.
  std::map<int, json> indicators;
  if (auto it = f.meta.find("indicators"); it != f.meta.end() && it->is_array())
    for (const auto& i : *it)
      if (i.is_object() && i.contains("no") && i["no"].is_number_integer())
        indicators[i["no"].get<int>()] = i;
  for (const auto& def : f.fields)
    if (def.indicator && !indicators.count(*def.indicator))
      indicators[*def.indicator] = {{"no", *def.indicator}};

  // Regencies first, then kecamatans, each by code.
  std::vector<std::pair<std::string, const AreaTotals*>> ordered;
  for (const auto& [code, a] : areas)
    if (a.level == "regency") ordered.emplace_back(code, &a);
  for (const auto& [code, a] : areas)
    if (a.level == "kecamatan") ordered.emplace_back(code, &a);

  if (format == "csv") {
    std::string out = csv_row({"level", "code", "villages", "indicator", "indicator_name", "field",
                               "aggregate", "villages_with_value", "open_conflicts", "value"});
    for (const auto& [code, a] : ordered)
      for (const auto& [no, meta] : indicators) {
        const std::string name = meta.value("name", std::string());
        const std::string with_value =
            std::to_string(a->indicator_with_value.count(no) ? a->indicator_with_value.at(no) : 0);
        const std::string open =
            std::to_string(a->indicator_conflicts.count(no) ? a->indicator_conflicts.at(no) : 0);
        bool any = false;
        for (const auto& def : f.fields) {
          if (def.indicator != no) continue;
          any = true;
          auto it = a->fields.find(def.name);
          const FieldTotals t = it == a->fields.end() ? FieldTotals{} : it->second;
          out += csv_row({a->level, code, std::to_string(a->villages), std::to_string(no), name,
                          def.name, std::string(aggregate_name(def.aggregate)),
                          std::to_string(t.with_value), open, cell(aggregate_value(def, t))});
        }
        if (!any)
          out += csv_row({a->level, code, std::to_string(a->villages), std::to_string(no), name, "",
                          "", with_value, open, ""});
      }
    return {200, "text/csv; charset=utf-8", std::move(out)};
  }

  json area_list = json::array();
  for (const auto& [code, a] : ordered) {
    json list = json::array();
    for (const auto& [no, meta] : indicators) {
      json fields = json::array();
      for (const auto& def : f.fields) {
        if (def.indicator != no) continue;
        auto it = a->fields.find(def.name);
        const FieldTotals t = it == a->fields.end() ? FieldTotals{} : it->second;
        fields.push_back({{"name", def.name},
                          {"aggregate", aggregate_name(def.aggregate)},
                          {"villages_with_value", t.with_value},
                          {"value", aggregate_value(def, t)}});
      }
      list.push_back(
          {{"no", no},
           {"name", meta.value("name", std::string())},
           {"cluster", meta.value("cluster", std::string())},
           {"villages_with_value",
            a->indicator_with_value.count(no) ? a->indicator_with_value.at(no) : 0},
           {"open_conflicts", a->indicator_conflicts.count(no) ? a->indicator_conflicts.at(no) : 0},
           {"fields", std::move(fields)}});
    }
    area_list.push_back({{"level", a->level},
                         {"code", code},
                         {"villages", a->villages},
                         {"open_conflicts", a->open_conflicts},
                         {"indicators", std::move(list)}});
  }
  return json_reply(200, {{"form", form_id},
                          {"form_version", f.version},
                          {"scope", scope},
                          {"areas", std::move(area_list)}});
}

AdminReply AdminApi::export_csv(const Caller& caller, const QueryParams& query) {
  const std::string form_id = param(query, "form");
  const std::string scope = param(query, "scope");
  const std::string format = param(query, "format");
  if (form_id.empty()) return error_reply(400, "bad_request", "form is required");
  if (!format.empty() && format != "csv")
    return error_reply(400, "bad_request", "format must be csv");
  if (!scope.empty() && !is_valid_region_code(scope))
    return error_reply(400, "bad_request", "scope must be a region code like 14.03.01");
  if (!scope.empty() && !caller.covers(scope))
    return error_reply(403, "forbidden", "scope " + scope + " is outside your scopes");
  auto form = store_.form(form_id, std::nullopt);
  if (!form) return store_error(form.error());
  if (!*form) return error_reply(404, "not_found", "no form " + form_id);

  RecordsQuery rq;
  rq.filter = ScopeFilter::of(caller);
  rq.form = form_id;
  rq.scope_prefix = scope;
  auto records = all_records(store_, rq);
  if (!records) return store_error(records.error());
  std::sort(records->begin(), records->end(),
            [](const RecordState& a, const RecordState& b) { return a.row.id < b.row.id; });

  std::vector<std::string> header = {"_id", "_scope", "_form_version", "_version"};
  for (const auto& def : (*form)->fields) header.push_back(def.name);
  std::string out = csv_row(header);
  for (const auto& r : *records) {
    if (r.row.deleted) continue;
    std::vector<std::string> row = {r.row.id, r.row.scope, std::to_string(r.row.form_version),
                                    std::to_string(r.row.version)};
    for (const auto& def : (*form)->fields) {
      auto it = r.row.fields.find(def.name);
      row.push_back(it == r.row.fields.end() ? std::string() : cell(it->second.value));
    }
    out += csv_row(row);
  }
  return {200, "text/csv; charset=utf-8", std::move(out)};
}

// ---- revocation (issue #5) --------------------------------------------------

namespace {

AdminReply not_found_or_store_error(const Error& e) {
  if (e.code == Errc::not_found) return error_reply(404, "not_found", e.message);
  return store_error(e);
}

AdminReply self_revocation(std::string_view what) {
  return error_reply(409, "self_revocation",
                     std::string("an administrator cannot revoke their own ") + std::string(what) +
                         "; ask another administrator");
}

}  // namespace

AdminReply AdminApi::revoke_user(const Caller& admin, const std::string& name) {
  if (!is_valid_username(name)) return error_reply(404, "not_found", "no user " + name);
  if (name == admin.username) return self_revocation("user");
  auto n = server::revoke_user(writer_, name);
  if (!n) return not_found_or_store_error(n.error());
  return json_reply(200, {{"user", name}, {"disabled", true}, {"tokens_revoked", *n}});
}

AdminReply AdminApi::reinstate_user(const Caller&, const std::string& name) {
  if (!is_valid_username(name)) return error_reply(404, "not_found", "no user " + name);
  auto was = server::reinstate_user(writer_, name);
  if (!was) return not_found_or_store_error(was.error());
  return json_reply(200, {{"user", name}, {"disabled", false}, {"was_disabled", *was}});
}

AdminReply AdminApi::revoke_device(const Caller& admin, const std::string& device_id,
                                   std::int64_t now_ms) {
  if (!is_valid_device_id(device_id))
    return error_reply(404, "not_found", "no device " + device_id);
  if (device_id == admin.device_id) return self_revocation("device");
  auto r = server::revoke_device(writer_, device_id, admin.username, now_ms);
  if (!r) return not_found_or_store_error(r.error());
  return json_reply(200, {{"device_id", device_id},
                          {"revoked", true},
                          {"revoked_at", format_rfc3339_ms(r->revocation.revoked_at_ms)},
                          {"revoked_by", r->revocation.revoked_by},
                          {"already_revoked", r->already_revoked},
                          {"tokens_revoked", r->tokens_revoked}});
}

AdminReply AdminApi::reinstate_device(const Caller&, const std::string& device_id) {
  if (!is_valid_device_id(device_id))
    return error_reply(404, "not_found", "no device " + device_id);
  auto was = server::reinstate_device(writer_, device_id);
  if (!was) return not_found_or_store_error(was.error());
  return json_reply(200, {{"device_id", device_id}, {"revoked", false}, {"was_revoked", *was}});
}

}  // namespace fieldsync::server
