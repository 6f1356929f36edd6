// Conflict resolution (resolve.hpp). Checks everything first, then writes: one
// seq and log entry per record touched, the conflict marked resolved with who,
// when, what and the note.
#include "resolve.hpp"

#include <algorithm>

#include "fieldsync/hlc.hpp"
#include "merge.hpp"

namespace fieldsync::server {
namespace {

ResolveOutcome failure(ResolveFailure kind, std::string message, std::string field = {}) {
  ResolveOutcome o;
  o.failure = kind;
  o.message = std::move(message);
  o.field = std::move(field);
  return o;
}

// Reads an optional 0-based candidate index.
bool candidate_index(const json& body, const ConflictRow& c, std::size_t& out) {
  auto it = body.find("candidate");
  if (it == body.end() || !it->is_number_unsigned()) return false;
  out = it->get<std::size_t>();
  return out < c.candidates.size();
}

class Resolution {
 public:
  Resolution(WriteTxn& txn, const Caller& admin, std::int64_t now_ms, const ConflictRow& c)
      : txn_(txn),
        admin_(admin),
        c_(c),
        now_(format_rfc3339_ms(now_ms)),
        hlc_(Hlc{now_ms, 0}.to_string()) {}

  // Writes one log entry for `row` (already updated by the caller except for
  // its version and key) with `fields` set at the new seq.
  std::int64_t emit(RecordRow& row, const std::string& op, const json& fields, const Form* form) {
    const std::int64_t seq = txn_.next_seq();
    for (const auto& [name, value] : fields.items()) row.fields[name] = FieldRow{value, seq};
    if (op == "delete") {
      row.deleted = true;
      row.deleted_seq = seq;
    }
    if (op != "upsert" || !fields.empty()) row.version = seq;
    if (form) row.key_text = record_key_text(*form, row.fields);
    txn_.put_record(row);
    LogEntry e;
    e.seq = seq;
    e.record = row.id;
    e.form = row.form;
    e.form_version = row.form_version;
    e.scope = row.scope;
    e.op = op;
    e.fields = fields;
    e.origin = "admin:" + admin_.username + ":" + std::to_string(c_.id);
    e.author = admin_.username;
    e.hlc = hlc_;
    e.received_at = now_;
    e.conflicts.push_back(ConflictRef{c_.id, c_.kind, c_.field, "resolved"});
    txn_.insert_log(e);
    seqs_.push_back(seq);
    return seq;
  }

  const std::vector<std::int64_t>& seqs() const { return seqs_; }
  const std::string& now() const { return now_; }

 private:
  WriteTxn& txn_;
  const Caller& admin_;
  const ConflictRow& c_;
  std::string now_;
  std::string hlc_;
  std::vector<std::int64_t> seqs_;
};

}  // namespace

ResolveOutcome resolve_conflict(WriteTxn& txn, const Caller& admin, std::int64_t now_ms,
                                std::int64_t id, const json& body) {
  if (!body.is_object())
    return failure(ResolveFailure::validation, "the resolution must be a JSON object");
  auto found = txn.conflict(id);
  if (!found) return failure(ResolveFailure::not_found, "no conflict " + std::to_string(id));
  const ConflictRow& c = *found;
  if (c.status != "open")
    return failure(ResolveFailure::already_resolved,
                   "conflict " + std::to_string(id) + " is already resolved");
  std::string note;
  if (auto n = body.find("note"); n != body.end() && !n->is_null()) {
    if (!n->is_string() || n->get<std::string>().size() > 2000)
      return failure(ResolveFailure::validation, "note must be a text of at most 2000 bytes",
                     "note");
    note = n->get<std::string>();
  }
  const std::string keep =
      body.contains("keep") && body["keep"].is_string() ? body["keep"].get<std::string>() : "";

  auto record = txn.record(c.record);
  if (!record)
    throw StoreFailure{
        Error(Errc::corrupt, "conflict " + std::to_string(id) + " names a missing record")};
  auto form = txn.form(record->form, record->form_version);
  if (!form)
    throw StoreFailure{Error(Errc::corrupt, "the form of record " + record->id + " is missing")};

  Resolution res(txn, admin, now_ms, c);
  json action = body;
  action.erase("note");

  if (c.kind == "field") {
    if (record->deleted)
      return failure(ResolveFailure::deleted,
                     "the record was deleted since; resolve its delete first");
    json value;
    std::size_t i = 0;
    if (body.contains("value")) {
      value = body["value"];
    } else if (keep == "server") {
      auto cur = record->fields.find(c.field);
      value = cur == record->fields.end() ? json(nullptr) : cur->second.value;
    } else if (keep == "candidate") {
      if (!candidate_index(body, c, i))
        return failure(ResolveFailure::validation,
                       "candidate must be the index of one of the candidates", "candidate");
      value = c.candidates[i].value;
    } else {
      return failure(ResolveFailure::validation,
                     "give a value, keep: server, or keep: candidate with candidate", "keep");
    }
    if (auto ok = form->validate_value(c.field, value); !ok)
      return failure(ResolveFailure::validation, ok.error().message, "value");
    res.emit(*record, "upsert", json{{c.field, value}}, &*form);
  } else if (c.kind == "delete") {
    if (keep == "deleted") {
      res.emit(*record, "delete", json::object(), nullptr);
    } else if (keep == "record") {
      json fields = json::object();
      if (body.contains("candidate")) {
        std::size_t i = 0;
        if (!candidate_index(body, c, i) || !c.candidates[i].value.is_object())
          return failure(ResolveFailure::validation,
                         "candidate must be the index of a candidate with fields", "candidate");
        fields = c.candidates[i].value;
        if (auto ok = form->validate_fields(fields, false); !ok)
          return failure(ResolveFailure::validation, ok.error().message, ok.error().field);
      }
      if (record->deleted) {
        // Live again with its last values (every field travels, so a device that
        // dropped them has them back), plus the candidate's.
        json all = json::object();
        for (const auto& [name, f] : record->fields) all[name] = f.value;
        for (const auto& [name, v] : fields.items()) all[name] = v;
        record->deleted = false;
        res.emit(*record, "revive", all, &*form);
      } else {
        res.emit(*record, "upsert", fields, &*form);
      }
    } else {
      return failure(ResolveFailure::validation, "keep must be deleted or record", "keep");
    }
  } else {
    if (body.contains("merge_into")) {
      const json& target_id = body["merge_into"];
      if (!target_id.is_string() || std::find(c.records.begin(), c.records.end(),
                                              target_id.get<std::string>()) == c.records.end())
        return failure(ResolveFailure::validation,
                       "merge_into must be one of the conflict's records", "merge_into");
      auto target = txn.record(target_id.get<std::string>());
      if (!target || target->deleted)
        return failure(ResolveFailure::validation, "the record to merge into is deleted",
                       "merge_into");
      const auto& target_fields = target->fields;
      json fills = json::object();
      std::vector<RecordRow> others;
      for (const auto& other_id : c.records) {
        if (other_id == target->id) continue;
        auto other = txn.record(other_id);
        if (!other || other->deleted) continue;
        for (const auto& [name, f] : other->fields) {
          if (f.value.is_null() || fills.contains(name)) continue;
          auto t = target_fields.find(name);
          if (t == target_fields.end() || t->second.value.is_null()) fills[name] = f.value;
        }
        others.push_back(std::move(*other));
      }
      auto target_form = txn.form(target->form, target->form_version);
      res.emit(*target, "upsert", fills, target_form ? &*target_form : nullptr);
      for (auto& other : others) res.emit(other, "delete", json::object(), nullptr);
    } else if (keep == "both") {
      for (const auto& rid : c.records) {
        auto r = txn.record(rid);
        if (r)
          res.emit(*r, "upsert", json::object(), nullptr);  // sets nothing; names the resolution
      }
    } else {
      return failure(ResolveFailure::validation, "give keep: both or merge_into", "keep");
    }
  }

  json resolution = {
      {"by", admin.username}, {"at", res.now()}, {"action", action}, {"seqs", res.seqs()}};
  if (!note.empty()) resolution["note"] = note;
  txn.resolve_conflict(id, resolution);
  ResolveOutcome out;
  out.seqs = res.seqs();
  return out;
}

}  // namespace fieldsync::server
