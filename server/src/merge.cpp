// The merge rule (merge.hpp, protocol.md "Sync"). Each change is first checked
// without writing anything (rejections in the documented order), then executed:
// one seq, one log entry, field versions, conflicts and candidates, the processed
// row that answers retries.
#include "merge.hpp"

#include <algorithm>
#include <optional>
#include <vector>

#include "crypto.hpp"
#include "fieldsync/hlc.hpp"
#include "fieldsync/ids.hpp"

namespace fieldsync::server {
namespace {

std::int64_t base_of(const VersionMap& base, const std::string& key) {
  auto it = base.find(key);
  return it == base.end() ? 0 : it->second;
}

const std::string* string_member(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return nullptr;
  return it->get_ptr<const std::string*>();
}

RejectReason reason(std::string code, std::string message, std::string field = {}) {
  return RejectReason{std::move(code), std::move(message), std::move(field)};
}

// A result as the processed table keeps it: the versions equal to its seq are
// left out (most of them, for a new record), and expand_versions() puts them back.
json stored_result(const ChangeResult& r) {
  return r.to_json(/*compact=*/true);
}

}  // namespace

void expand_versions(ChangeResult& r, const json& raw) {
  if (r.status == "rejected") return;
  const std::string* op = string_member(raw, "op");
  if (op && *op == "delete") {
    r.versions.try_emplace("", r.seq);
    return;
  }
  if (auto fields = raw.find("fields"); fields != raw.end() && fields->is_object())
    for (const auto& [name, value] : fields->items()) r.versions.try_emplace(name, r.seq);
}

std::string received_hash(const json& raw) {
  std::string text;  // raw.dump(), without a serializer per call
  append_dump(text, raw);
  return to_hex(sha256(text));
}

namespace {

bool is_zero(const json& v) {
  return v.is_number_integer() && !v.is_number_float() && v.get<std::int64_t>() == 0;
}

// The hash of `raw` with its base written as `zeros` says; `raw` is left as it
// was. A base that is neither an object nor null is hashed as received.
enum class Zeros { dropped, written };  // written: one per field of `fields`, plus ""
std::string hash_with_base(json& raw, Zeros zeros) {
  if (!raw.is_object()) return received_hash(raw);
  auto base = raw.find("base");
  const bool had_base = base != raw.end();
  if (had_base && !base->is_null() && !base->is_object()) return received_hash(raw);
  const json empty = json::object();
  const json& given = had_base && base->is_object() ? *base : empty;
  const json* fields = nullptr;
  if (auto f = raw.find("fields"); f != raw.end() && f->is_object()) fields = &*f;

  // Is the base already written that way? (The device core's way, for dropped.)
  bool as_wanted = had_base && base->is_object() && given.contains("");
  if (zeros == Zeros::dropped) {
    for (const auto& [k, v] : given.items())
      if (!k.empty() && is_zero(v)) as_wanted = false;
  } else if (fields) {
    for (const auto& [k, v] : fields->items())
      if (!given.contains(k)) as_wanted = false;
  }
  if (as_wanted) return received_hash(raw);

  json rewritten = json::object();
  for (const auto& [k, v] : given.items())
    if (zeros == Zeros::written || k.empty() || !is_zero(v)) rewritten[k] = v;
  rewritten.emplace("", 0);
  if (zeros == Zeros::written && fields)
    for (const auto& [k, v] : fields->items()) rewritten.emplace(k, 0);
  json original = had_base ? std::move(*base) : json();
  raw["base"] = std::move(rewritten);
  std::string hash = received_hash(raw);
  if (had_base)
    raw["base"] = std::move(original);
  else
    raw.erase("base");
  return hash;
}

}  // namespace

std::string change_hash(json& raw) {
  return hash_with_base(raw, Zeros::dropped);
}

bool same_content(const std::string& stored, const json& raw, const std::string& hash) {
  if (stored == hash) return true;
  // Hashes stored before change_hash(): of the text as received, which for the
  // device core then meant every zero base written out.
  if (stored == received_hash(raw)) return true;
  json copy = raw;
  return stored == hash_with_base(copy, Zeros::written);
}

namespace {

// The key's values as a JSON array, "" when the form has no key or one of them
// is missing or null. `value_of(name)`: the field's value, nullptr when absent.
template <class ValueOf>
std::string key_text(const Form& form, ValueOf value_of) {
  if (form.key.empty()) return {};
  json values = json::array();
  for (const auto& k : form.key) {
    const json* v = value_of(k);
    if (!v || v->is_null()) return {};
    values.push_back(*v);
  }
  return values.dump();
}

// record_key_text of a new record whose field rows would be `fields` at one version.
std::string record_key_text(const Form& form, const json& fields) {
  return key_text(form, [&](const std::string& k) -> const json* {
    auto it = fields.find(k);
    return it == fields.end() ? nullptr : &*it;
  });
}

}  // namespace

std::string record_key_text(const Form& form, const std::map<std::string, FieldRow>& fields) {
  return key_text(form, [&](const std::string& k) -> const json* {
    auto it = fields.find(k);
    return it == fields.end() ? nullptr : &it->second.value;
  });
}

// What check() learned about a change, for execute().
struct Merger::Plan {
  Change change;
  std::optional<RecordRow> record;
  std::shared_ptr<const Form> form;  // the form version the change was made with
  std::int64_t form_version = 0;
};

Merger::Merger(WriteTxn& txn, MergeContext context)
    : txn_(txn), ctx_(std::move(context)), received_at_(format_rfc3339_ms(ctx_.received_at_ms)) {}

std::shared_ptr<const Form> Merger::form(const std::string& id,
                                         std::optional<std::int64_t> version) {
  std::int64_t v = 0;
  if (version) {
    v = *version;
  } else if (auto it = latest_.find(id); it != latest_.end()) {
    v = it->second;
  } else {
    auto latest = txn_.form(id, std::nullopt);
    if (!latest) return nullptr;
    v = latest->version;
    latest_[id] = v;
    auto key = std::make_pair(id, v);
    auto shared = std::make_shared<const Form>(std::move(*latest));
    forms_[key] = shared;
    return shared;
  }
  auto key = std::make_pair(id, v);
  if (auto it = forms_.find(key); it != forms_.end()) return it->second;
  auto loaded = txn_.form(id, v);
  if (!loaded) return nullptr;
  auto shared = std::make_shared<const Form>(std::move(*loaded));
  forms_[key] = shared;
  return shared;
}

Received::Received(json& raw) : hash(change_hash(raw)), change(decode_change(raw)) {}

ChangeResult Merger::apply(const json& raw, Received& received) {
  const std::string& hash = received.hash;
  const std::string id = raw.at("id").get<std::string>();
  auto prior = txn_.processed(id);
  if (prior && same_content(prior->content_hash, raw, hash)) {
    auto first = ChangeResult::from_json(prior->result);
    if (!first)
      throw StoreFailure{Error(Errc::corrupt, "the stored result of " + id + " cannot be read")};
    ChangeResult r = std::move(first).value();
    r.replayed = true;
    ++stats_.replayed;
    return r;
  }

  Plan plan;
  auto rejection = check(raw, received.change, plan);
  if (!rejection && prior)
    rejection =
        reason("id_reused",
               "change id " + id +
                   " was used before for a different change; take a new device id and renumber "
                   "the unsynced changes",
               "id");
  if (rejection) return reject(raw, id, std::move(*rejection), !prior, hash);

  ChangeResult result = execute(plan);
  txn_.insert_processed(ProcessedRow{id, hash, stored_result(result)});
  if (result.status == "applied") {
    ++stats_.applied;
  } else {
    ++stats_.conflicted;
  }
  return result;
}

ChangeResult Merger::reject(const json& raw, const std::string& id, RejectReason why, bool remember,
                            const std::string& hash) {
  ChangeResult r;
  r.id = id;
  r.status = "rejected";
  r.error = why;
  txn_.insert_quarantine(
      QuarantineRow{0, id, ctx_.device_id, ctx_.caller.username, raw, why, received_at_});
  if (remember) txn_.insert_processed(ProcessedRow{id, hash, r.to_json()});
  ++stats_.rejected;
  ++stats_.rejected_by_reason[why.code];
  stats_.last_error = why.code + ": " + (why.field.empty() ? "" : why.field + ": ") + why.message;
  return r;
}

// The rejection checks of protocol.md, in its order: forbidden, unknown_form,
// validation, stale_form_version, deleted (id_reused is left to the caller).
std::optional<RejectReason> Merger::check(const json& raw, Result<Change>& decoded, Plan& plan) {
  const std::string* raw_record = string_member(raw, "record");
  if (raw_record && is_uuid(*raw_record)) plan.record = txn_.record(*raw_record);

  // forbidden
  if (const std::string* scope = string_member(raw, "scope");
      scope && is_valid_region_code(*scope) && !ctx_.caller.covers(*scope))
    return reason("forbidden", "scope " + *scope + " is outside your scopes", "scope");
  if (plan.record && !ctx_.caller.covers(plan.record->scope))
    return reason("forbidden",
                  "the record belongs to scope " + plan.record->scope + ", outside your scopes",
                  "record");

  // unknown_form
  std::string form_id;
  if (const std::string* f = string_member(raw, "form"); f && !f->empty()) {
    form_id = *f;
  } else if (plan.record) {
    form_id = plan.record->form;
  }
  std::optional<std::int64_t> version;
  if (auto it = raw.find("form_version");
      it != raw.end() && it->is_number_integer() && !it->is_number_float()) {
    if (it->get<std::int64_t>() >= 1) version = it->get<std::int64_t>();
  }
  if (!form_id.empty()) {
    plan.form = form(form_id, version);
    if (!plan.form) {
      if (version && form(form_id, std::nullopt))
        return reason("unknown_form",
                      "form " + form_id + " has no version " + std::to_string(*version),
                      "form_version");
      return reason("unknown_form", "form " + form_id + " is not published on this server", "form");
    }
    plan.form_version = plan.form->version;
  }

  // validation
  if (!decoded) {
    const Error& e = decoded.error();
    return reason("validation", e.message, e.field);
  }
  plan.change = std::move(decoded).value();
  Change& c = plan.change;
  auto change_id = ChangeId::parse(c.id);
  if (!change_id || change_id->device_id != ctx_.device_id)
    return reason("validation", "the change id must start with this request's device_id", "id");
  if (plan.record) {
    if (!c.form.empty() && c.form != plan.record->form)
      return reason("validation",
                    "the record belongs to form " + plan.record->form + "; it cannot change",
                    "form");
    if (!c.scope.empty() && c.scope != plan.record->scope)
      return reason("validation",
                    "the record belongs to scope " + plan.record->scope + "; it cannot change",
                    "scope");
  } else {
    if (c.form.empty()) return reason("validation", "a new record needs its form", "form");
    if (c.scope.empty()) return reason("validation", "a new record needs its scope", "scope");
  }
  if (c.op == "upsert") {
    bool creating = !plan.record;
    if (auto ok = plan.form->validate_fields(c.fields, creating); !ok)
      return reason("validation", ok.error().message, ok.error().field);
  } else if (!c.base.count("")) {
    return reason("validation", "a delete must carry base[\"\"], the record version it saw",
                  "base");
  }

  // stale_form_version
  if (plan.record && c.op == "upsert" && plan.form_version < plan.record->form_version) {
    auto newer = form(plan.record->form, plan.record->form_version);
    if (!newer)
      throw StoreFailure{Error(Errc::corrupt, "form " + plan.record->form + " version " +
                                                  std::to_string(plan.record->form_version) +
                                                  " is missing")};
    for (const auto& [name, value] : c.fields.items()) {
      if (!newer->field(name))
        return reason("stale_form_version",
                      "the record uses form version " + std::to_string(plan.record->form_version) +
                          ", which no longer has this field",
                      name);
    }
  }

  // deleted
  if (plan.record && plan.record->deleted && c.op == "upsert") {
    std::int64_t highest = 0;
    for (const auto& [name, v] : c.base) highest = std::max(highest, v);
    if (highest >= plan.record->deleted_seq)
      return reason("deleted", "the record was deleted (seq " +
                                   std::to_string(plan.record->deleted_seq) +
                                   ") and this device had seen it");
  }
  return std::nullopt;
}

std::int64_t Merger::join_or_open(const RecordRow& record, const std::string& kind,
                                  const std::string& field, std::int64_t seq,
                                  const Candidate& candidate) {
  auto id = txn_.open_conflict(record.id, kind, field);
  if (!id) {
    ConflictRow row;
    row.kind = kind;
    row.record = record.id;
    row.form = record.form;
    row.scope = record.scope;
    row.field = field;
    row.opened_seq = seq;
    row.opened_at = received_at_;
    id = txn_.insert_conflict(row);
    ++stats_.conflicts_opened;
  }
  txn_.insert_candidate(*id, candidate);
  return *id;
}

ChangeResult Merger::execute(Plan& plan) {
  const Change& c = plan.change;
  const std::int64_t seq = txn_.next_seq();
  if (auto h = Hlc::parse(c.hlc)) {
    stats_.min_hlc_ms = std::min(stats_.min_hlc_ms.value_or(h->millis), h->millis);
    stats_.max_hlc_ms = std::max(stats_.max_hlc_ms.value_or(h->millis), h->millis);
  }

  RecordRow row;
  if (plan.record) {
    row = *plan.record;
  } else {
    row.id = c.record;
    row.form = c.form;
    row.form_version = plan.form_version;
    row.scope = c.scope;
  }

  ChangeResult result;
  result.id = c.id;
  result.status = "applied";
  result.seq = seq;

  LogEntry entry;
  entry.seq = seq;
  entry.record = row.id;
  entry.form = row.form;
  entry.form_version = plan.form_version;
  entry.scope = row.scope;
  entry.op = c.op;
  entry.origin = c.id;
  entry.author = ctx_.caller.username;
  entry.device = ctx_.device_id;
  entry.hlc = c.hlc;
  entry.received_at = received_at_;

  Candidate candidate;
  candidate.op = c.op;
  candidate.change = c.id;
  candidate.author = ctx_.caller.username;
  candidate.device = ctx_.device_id;
  candidate.hlc = c.hlc;
  candidate.received_at = received_at_;
  candidate.record = row.id;
  candidate.form_version = plan.form_version;

  auto add_conflict = [&](std::int64_t id, const std::string& kind, const std::string& field) {
    result.conflicts.push_back(ConflictRef{id, kind, field, ""});
    entry.conflicts.push_back(ConflictRef{id, kind, field, "open"});
  };

  if (c.op == "delete") {
    if (!plan.record || row.deleted || base_of(c.base, "") >= row.version) {
      row.deleted = true;
      row.deleted_seq = seq;
      row.version = seq;
      txn_.put_record(row);  // versions[""] is seq: left out (compact)
    } else {
      // The log entry says what happened to the data: nothing was deleted, so it
      // is an upsert without fields that names the conflict (docs/protocol.md).
      entry.op = "upsert";
      candidate.value = nullptr;
      add_conflict(join_or_open(row, "delete", "", seq, candidate), "delete", "");
      result.status = "conflict";
      result.versions[""] = row.version;
    }
  } else if (row.deleted) {
    // Deleted after everything this change had seen (check() rejected the rest):
    // nothing is applied; the change joins the record's delete conflict.
    candidate.value = c.fields;
    add_conflict(join_or_open(row, "delete", "", seq, candidate), "delete", "");
    result.status = "conflict";
    for (const auto& [name, value] : c.fields.items()) {
      auto cur = row.fields.find(name);
      result.versions[name] = cur == row.fields.end() ? 0 : cur->second.version;
    }
  } else {
    const bool creating = !plan.record;
    std::vector<const std::string*> set_names;  // of c.fields, for the log entry
    bool key_changed = false;
    row.form_version = std::max(row.form_version, plan.form_version);
    // The usual create: a new record, a change that saw nothing of it. Every value
    // is set at seq, and the stored text is written from the change's values
    // rather than from field rows copied from them (what fields_text() writes).
    std::optional<std::string> created_text;
    if (creating &&
        std::all_of(c.base.begin(), c.base.end(), [](const auto& b) { return b.second == 0; })) {
      std::string& text = created_text.emplace("{");
      const std::string version = std::to_string(seq);
      for (const auto& [name, value] : c.fields.items()) {
        if (text.size() > 1) text += ',';
        append_dump_string(text, name);
        text += ":[";
        append_dump(text, value);
        text += ',';
        text += version;
        text += ']';
        set_names.push_back(&name);  // versions[name] is seq: left out (compact)
      }
      text += '}';
    }
    for (const auto& [name, value] : c.fields.items()) {
      if (created_text) break;  // all set above
      static const FieldRow kNever{nullptr, 0};
      auto found = row.fields.find(name);
      const FieldRow& cur = found == row.fields.end() ? kNever : found->second;
      if (base_of(c.base, name) == cur.version) {
        if (!values_equal(value, cur.value) &&
            std::find(plan.form->key.begin(), plan.form->key.end(), name) != plan.form->key.end())
          key_changed = true;
        row.fields[name] = FieldRow{value, seq};
        set_names.push_back(&name);  // versions[name] is seq: left out (compact)
      } else if (values_equal(value, cur.value)) {
        result.versions[name] = cur.version;
      } else {
        candidate.value = value;
        add_conflict(join_or_open(row, "field", name, seq, candidate), "field", name);
        result.status = "conflict";
        result.versions[name] = cur.version;
      }
    }
    if (!set_names.empty()) row.version = seq;
    if (created_text) {
      row.key_text = record_key_text(*plan.form, c.fields);
      txn_.put_record_text(row, *created_text);
    } else {
      row.key_text = record_key_text(*plan.form, row.fields);
      txn_.put_record(row);
    }
    if ((creating || key_changed) && !row.key_text.empty()) {
      if (auto other = txn_.find_live_by_key(row.form, row.key_text, row.id)) {
        auto dup = txn_.open_duplicate_conflict(*other);
        if (dup) {
          txn_.link_conflict_record(*dup, row.id);
        } else {
          auto other_row = txn_.record(*other);
          ConflictRow conflict;
          conflict.kind = "duplicate_record";
          conflict.record = *other;
          conflict.records = {*other, row.id};
          conflict.form = row.form;
          conflict.scope = other_row ? other_row->scope : row.scope;
          conflict.field = "";
          conflict.opened_seq = seq;
          conflict.opened_at = received_at_;
          dup = txn_.insert_conflict(conflict);
          ++stats_.conflicts_opened;
        }
        candidate.value = c.fields;
        txn_.insert_candidate(*dup, candidate);
        add_conflict(*dup, "duplicate_record", "");
      }
    }
    // The log entry holds the values set. Usually that is all of them, which are
    // moved rather than copied: the change is not read after this.
    if (!set_names.empty() && set_names.size() == c.fields.size()) {
      entry.fields = std::move(plan.change.fields);
    } else {
      for (const std::string* name : set_names) entry.fields[*name] = c.fields.at(*name);
    }
  }

  txn_.insert_log(entry);
  return result;
}

}  // namespace fieldsync::server
