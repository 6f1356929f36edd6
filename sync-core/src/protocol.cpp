// JSON encoding and decoding of protocol v1 messages (docs/protocol.md).
#include "fieldsync/protocol.hpp"

#include <algorithm>
#include <limits>
#include <set>
#include <stdexcept>
#include <type_traits>

#include "fieldsync/hlc.hpp"
#include "fieldsync/ids.hpp"

namespace fieldsync {
namespace {

Error bad_change(std::string field, std::string message) {
  return Error(Errc::validation, std::move(message), std::move(field));
}
Error bad_message(std::string message) {
  return Error(Errc::protocol, std::move(message));
}

bool is_count(const json& v) {
  if (v.is_number_unsigned())
    return v.get<std::uint64_t>() <=
           static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  return v.is_number_integer() && v.get<std::int64_t>() >= 0;
}

// Reads an optional member of a server message with the right type.
template <class T>
bool read(const json& j, const char* key, T& out, bool required = false) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return !required;
  if constexpr (std::is_same_v<T, std::int64_t>) {
    // get<std::int64_t>() would also take a boolean, wrap a large unsigned and
    // convert a float (undefined behaviour when out of range).
    if (!it->is_number_integer() || (it->is_number_unsigned() && !is_count(*it))) return false;
  }
  try {
    out = it->get<T>();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

json versions_json(const VersionMap& m) {
  json out = json::object();
  for (const auto& [k, v] : m) out[k] = v;
  return out;
}

bool read_versions(const json& j, const char* key, VersionMap& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return true;
  if (!it->is_object()) return false;
  for (const auto& [k, v] : it->items()) {
    if (!is_count(v)) return false;
    out[k] = v.get<std::int64_t>();
  }
  return true;
}

bool read_conflicts(const json& j, std::vector<ConflictRef>& out) {
  auto it = j.find("conflicts");
  if (it == j.end() || it->is_null()) return true;
  if (!it->is_array()) return false;
  for (const auto& c : *it) {
    if (!c.is_object()) return false;
    ConflictRef r;
    if (!read(c, "id", r.id, true) || !read(c, "kind", r.kind) || !read(c, "field", r.field) ||
        !read(c, "status", r.status))
      return false;
    out.push_back(std::move(r));
  }
  return true;
}

}  // namespace

namespace {

// A change's members but "fields".
json change_without_fields(const Change& c) {
  json j = {{"id", c.id}, {"record", c.record}, {"op", c.op}, {"hlc", c.hlc}};
  if (!c.form.empty()) j["form"] = c.form;
  if (c.form_version) j["form_version"] = *c.form_version;
  if (!c.scope.empty()) j["scope"] = c.scope;
  j["base"] = versions_json(c.base);
  return j;
}

bool has_fields_member(const Change& c) {
  return c.op != "delete" || !c.fields.empty();
}

}  // namespace

json Change::to_json() const {
  json j = change_without_fields(*this);
  if (has_fields_member(*this)) j["fields"] = fields;
  return j;
}

Result<Change> decode_change(const json& j) {
  if (!j.is_object()) return bad_change("", "a change must be an object");
  Change c;
  auto id = j.find("id");
  if (id == j.end() || !id->is_string()) return bad_change("id", "a change needs a string id");
  c.id = id->get<std::string>();
  if (!ChangeId::parse(c.id)) return bad_change("id", "change id must be <device_id>:<counter>");
  auto rec = j.find("record");
  if (rec == j.end() || !rec->is_string() || !is_uuid(rec->get<std::string>()))
    return bad_change("record", "record must be a UUID");
  c.record = rec->get<std::string>();
  if (auto f = j.find("form"); f != j.end() && !f->is_null()) {
    if (!f->is_string() || f->get<std::string>().empty() || f->get<std::string>().size() > 64)
      return bad_change("form", "form must be a form id");
    c.form = f->get<std::string>();
  }
  if (auto fv = j.find("form_version"); fv != j.end() && !fv->is_null()) {
    if (!is_count(*fv) || fv->get<std::int64_t>() < 1)
      return bad_change("form_version", "form_version must be a whole number >= 1");
    c.form_version = fv->get<std::int64_t>();
  }
  if (auto s = j.find("scope"); s != j.end() && !s->is_null()) {
    if (!s->is_string() || !is_valid_region_code(s->get<std::string>()))
      return bad_change("scope", "scope must be a region code like 14.03.01.2001");
    c.scope = s->get<std::string>();
  }
  auto op = j.find("op");
  if (op == j.end() || !op->is_string() ||
      (op->get<std::string>() != "upsert" && op->get<std::string>() != "delete"))
    return bad_change("op", "op must be upsert or delete");
  c.op = op->get<std::string>();
  if (auto f = j.find("fields"); f != j.end() && !f->is_null()) {
    if (!f->is_object()) return bad_change("fields", "fields must be an object");
    if (c.op == "delete" && !f->empty()) return bad_change("fields", "a delete carries no fields");
    c.fields = *f;
  }
  if (auto b = j.find("base"); b != j.end() && !b->is_null()) {
    if (!b->is_object()) return bad_change("base", "base must be an object of versions");
    for (const auto& [k, v] : b->items()) {
      if (!is_count(v))
        return bad_change("base." + k, "a base version must be a whole number >= 0");
      c.base[k] = v.get<std::int64_t>();
    }
  }
  auto hlc = j.find("hlc");
  if (hlc == j.end() || !hlc->is_string()) return bad_change("hlc", "hlc is required");
  if (auto h = Hlc::parse(hlc->get<std::string>()); !h) return std::move(h).error();
  c.hlc = hlc->get<std::string>();
  return c;
}

json ConflictRef::to_json() const {
  json j = {{"id", id}, {"kind", kind}, {"field", field}};
  if (!status.empty()) j["status"] = status;
  return j;
}

json ChangeResult::to_json() const {
  return to_json(false);
}

json ChangeResult::to_json(bool compact) const {
  json j = {{"id", id}, {"status", status}};
  if (status == "rejected") {
    json e = {{"code", error ? error->code : "internal"}, {"message", error ? error->message : ""}};
    if (error && !error->field.empty()) e["field"] = error->field;
    j["error"] = std::move(e);
  } else {
    j["seq"] = seq;
    json vs = json::object();
    for (const auto& [k, v] : versions)
      if (!compact || v != seq) vs[k] = v;
    j["versions"] = std::move(vs);
    if (!conflicts.empty()) {
      json cs = json::array();
      for (const auto& c : conflicts) cs.push_back(c.to_json());
      j["conflicts"] = std::move(cs);
    }
  }
  if (replayed) j["replayed"] = true;
  return j;
}

Result<ChangeResult> ChangeResult::from_json(const json& j) {
  if (!j.is_object()) return bad_message("a result must be an object");
  ChangeResult r;
  if (!read(j, "id", r.id, true) || !read(j, "status", r.status, true) || !read(j, "seq", r.seq) ||
      !read(j, "replayed", r.replayed) || !read_versions(j, "versions", r.versions) ||
      !read_conflicts(j, r.conflicts))
    return bad_message("malformed result");
  if (r.status != "applied" && r.status != "conflict" && r.status != "rejected")
    return bad_message("unknown result status '" + r.status + "'");
  if (r.status == "rejected") {
    auto e = j.find("error");
    if (e == j.end() || !e->is_object()) return bad_message("a rejected result needs an error");
    RejectReason reason;
    if (!read(*e, "code", reason.code, true) || !read(*e, "message", reason.message) ||
        !read(*e, "field", reason.field))
      return bad_message("malformed error in a result");
    r.error = std::move(reason);
    // Nothing of a rejected change was applied: no seq, versions or conflicts
    // (to_json writes none, so keeping them would not survive a round trip).
    r.seq = 0;
    r.versions.clear();
    r.conflicts.clear();
  }
  return r;
}

json LogEntry::to_json() const {
  json j = {
      {"seq", seq},       {"record", record}, {"form", form},     {"form_version", form_version},
      {"scope", scope},   {"op", op},         {"fields", fields}, {"origin", origin},
      {"author", author}, {"device", device}, {"hlc", hlc},       {"received_at", received_at}};
  if (!conflicts.empty()) {
    json cs = json::array();
    for (const auto& c : conflicts) cs.push_back(c.to_json());
    j["conflicts"] = std::move(cs);
  }
  return j;
}

Result<LogEntry> LogEntry::from_json(const json& j) {
  if (!j.is_object()) return bad_message("a log entry must be an object");
  LogEntry e;
  if (!read(j, "seq", e.seq, true) || !read(j, "record", e.record, true) ||
      !read(j, "form", e.form) || !read(j, "form_version", e.form_version) ||
      !read(j, "scope", e.scope) || !read(j, "op", e.op, true) || !read(j, "origin", e.origin) ||
      !read(j, "author", e.author) || !read(j, "device", e.device) || !read(j, "hlc", e.hlc) ||
      !read(j, "received_at", e.received_at) || !read_conflicts(j, e.conflicts))
    return bad_message("malformed log entry");
  if (auto f = j.find("fields"); f != j.end() && !f->is_null()) {
    if (!f->is_object()) return bad_message("log entry fields must be an object");
    e.fields = *f;
  }
  if (e.op != "upsert" && e.op != "delete" && e.op != "revive")
    return bad_message("unknown log entry op '" + e.op + "'");
  return e;
}

json SyncRequest::encode(const std::string& device_id, const std::vector<Change>& changes,
                         std::int64_t since, std::int64_t limit, bool echo, bool compact_versions,
                         std::int64_t omit_own_through) {
  json cs = json::array();
  for (const auto& c : changes) cs.push_back(c.to_json());
  json body = {
      {"device_id", device_id}, {"changes", std::move(cs)}, {"since", since}, {"limit", limit}};
  if (!echo) body["echo"] = false;  // omitted when true: what servers before addition D expect
  if (compact_versions) body["compact_versions"] = true;                  // likewise, addition E
  if (omit_own_through > 0) body["omit_own_through"] = omit_own_through;  // addition F
  return body;
}

std::string SyncRequest::encode_changes(const std::vector<Change>& changes) {
  json cs = json::array();
  for (const auto& c : changes) cs.push_back(c.to_json());
  return cs.dump();
}

std::string SyncRequest::encode_changes(const std::vector<Change>& changes,
                                        const std::vector<std::string>& fields_texts) {
  if (fields_texts.size() != changes.size())
    throw std::invalid_argument("encode_changes: one fields text per change");
  std::string out = "[";
  for (std::size_t i = 0; i < changes.size(); ++i) {
    if (i) out += ',';
    std::string rest;  // "{...}", never empty
    append_dump(rest, change_without_fields(changes[i]));
    if (has_fields_member(changes[i])) {
      out += "{\"fields\":";
      out += fields_texts[i];
      out += ',';
      out.append(rest, 1);
    } else {
      out += rest;
    }
  }
  out += ']';
  return out;
}

std::string SyncRequest::encode_text(const std::string& device_id, std::string_view changes_text,
                                     std::int64_t since, std::int64_t limit, bool echo,
                                     bool compact_versions, std::int64_t omit_own_through) {
  json rest = encode(device_id, {}, since, limit, echo, compact_versions, omit_own_through);
  rest.erase("changes");
  std::string out = rest.dump();  // an object with device_id at least: "{...}"
  out.pop_back();
  out += ",\"changes\":";
  out += changes_text;
  out += '}';
  return out;
}

Result<SyncRequest> decode_sync_request_shape(const json& body) {
  return decode_sync_request_shape(json(body));
}

Result<SyncRequest> decode_sync_request_shape(json&& body) {
  auto bad = [](std::string m) { return Error(Errc::invalid_argument, std::move(m)); };
  if (!body.is_object()) return bad("the request body must be a JSON object");
  SyncRequest r;
  auto dev = body.find("device_id");
  if (dev == body.end() || !dev->is_string()) return bad("device_id (a string) is required");
  if (!is_valid_device_id(dev->get<std::string>()))
    return bad("device_id must be 1-64 characters of letters, digits, '-', '_' or '.'");
  r.device_id = dev->get<std::string>();
  if (auto cs = body.find("changes"); cs != body.end() && !cs->is_null()) {
    if (!cs->is_array()) return bad("changes must be an array");
    for (const auto& c : *cs) {
      if (!c.is_object()) return bad("each change must be an object");
      auto id = c.find("id");
      if (id == c.end() || !id->is_string()) return bad("each change needs a string id");
    }
    r.raw_changes = std::move(cs->get_ref<json::array_t&>());
  }
  for (auto [key, out] : {std::pair{"since", &r.since}, std::pair{"limit", &r.limit},
                          std::pair{"omit_own_through", &r.omit_own_through}}) {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) continue;
    if (!is_count(*it)) return bad(std::string(key) + " must be a whole number >= 0");
    *out = it->get<std::int64_t>();
  }
  if (auto it = body.find("echo"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) return bad("echo must be true or false");
    r.echo = it->get<bool>();
  }
  if (auto it = body.find("compact_versions"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) return bad("compact_versions must be true or false");
    r.compact_versions = it->get<bool>();
  }
  return r;
}

json SyncResponse::to_json(bool compact_versions) const {
  json rs = json::array(), cs = json::array();
  for (const auto& r : results) rs.push_back(r.to_json(compact_versions));
  for (const auto& c : changes) cs.push_back(c.to_json());
  return {
      {"results", std::move(rs)}, {"changes", std::move(cs)}, {"cursor", cursor}, {"more", more}};
}

Result<SyncResponse> SyncResponse::from_json(const json& j) {
  if (!j.is_object()) return bad_message("the sync response must be an object");
  SyncResponse s;
  if (!read(j, "cursor", s.cursor, true) || !read(j, "more", s.more))
    return bad_message("the sync response needs a cursor");
  for (const char* key : {"results", "changes"}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_array()) return bad_message(std::string(key) + " must be an array");
    for (const auto& item : *it) {
      if (std::string_view(key) == "results") {
        auto r = ChangeResult::from_json(item);
        if (!r) return std::move(r).error();
        s.results.push_back(std::move(r).value());
      } else {
        auto e = LogEntry::from_json(item);
        if (!e) return std::move(e).error();
        s.changes.push_back(std::move(e).value());
      }
    }
  }
  return s;
}

json UserInfo::to_json() const {
  return {{"username", username}, {"role", role}, {"scopes", scopes}};
}

Result<UserInfo> UserInfo::from_json(const json& j) {
  UserInfo u;
  if (!j.is_object() || !read(j, "username", u.username, true) || !read(j, "role", u.role, true) ||
      !read(j, "scopes", u.scopes))
    return bad_message("malformed user");
  return u;
}

json LoginResponse::to_json() const {
  return {{"token", token},
          {"expires_at", expires_at},
          {"features", features},
          {"user", user.to_json()}};
}

Result<LoginResponse> LoginResponse::from_json(const json& j) {
  LoginResponse r;
  if (!j.is_object() || !read(j, "token", r.token, true) || !read(j, "expires_at", r.expires_at) ||
      !read(j, "features", r.features))
    return bad_message("malformed login response");
  auto u = j.find("user");
  if (u == j.end()) return bad_message("login response without user");
  auto user = UserInfo::from_json(*u);
  if (!user) return std::move(user).error();
  r.user = std::move(user).value();
  return r;
}

namespace {

// nlohmann's SAX interface building the same DOM as json::parse, and refusing a
// member name seen before in the same object and containers nested deeper than
// the limit. It checks at the key, on the object being built, so it needs no
// record of the names besides the DOM itself and no callback per value.
class StrictDom {
 public:
  explicit StrictDom(int max_depth) : max_depth_(max_depth) {}

  bool null() { return put(nullptr); }
  bool boolean(bool v) { return put(v); }
  bool number_integer(json::number_integer_t v) { return put(v); }
  bool number_unsigned(json::number_unsigned_t v) { return put(v); }
  bool number_float(json::number_float_t v, const json::string_t&) { return put(v); }
  bool string(json::string_t& v) { return put(std::move(v)); }
  bool binary(json::binary_t& v) { return put(json::binary(std::move(v))); }
  bool start_object(std::size_t) { return open(json::object()); }
  bool start_array(std::size_t) { return open(json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(json::string_t& k) {
    // One lookup: try_emplace leaves `k` alone when the member is there already.
    auto [it, added] = stack_.back()->get_ref<json::object_t&>().try_emplace(std::move(k));
    if (!added) {
      error_ = "the JSON body has an object with the member " + json(k).dump() +
               " twice; duplicate member names are refused";
      return false;
    }
    member_ = &it->second;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    error_ = std::string("the body is not valid JSON: ") + e.what();
    return false;
  }

  json root;
  std::string error_;

 private:
  // Where the next value goes: the root, the member named last, or the array's end.
  template <class V>
  json* place(V&& v) {
    if (stack_.empty()) {
      root = json(std::forward<V>(v));
      return &root;
    }
    json& parent = *stack_.back();
    if (parent.is_array()) {
      parent.emplace_back(std::forward<V>(v));
      return &parent.back();
    }
    *member_ = json(std::forward<V>(v));
    return member_;
  }
  template <class V>
  bool put(V&& v) {
    place(std::forward<V>(v));
    return true;
  }
  bool open(json empty) {
    // The containers around this one: the 65th nested container opens at depth 64.
    if (static_cast<int>(stack_.size()) >= max_depth_) {
      error_ = "the JSON body is nested more than " + std::to_string(max_depth_) + " levels deep";
      return false;
    }
    stack_.push_back(place(std::move(empty)));
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }

  int max_depth_;
  std::vector<json*> stack_;
  json* member_ = nullptr;
};

}  // namespace

Result<json> parse_strict_json(std::string_view text, int max_depth) {
  StrictDom dom(max_depth);
  bool ok = false;
  try {
    ok = json::sax_parse(text.begin(), text.end(), &dom, json::input_format_t::json, true);
  } catch (const json::exception& e) {
    return Error(Errc::invalid_argument, std::string("the body is not valid JSON: ") + e.what());
  }
  if (!ok) return Error(Errc::invalid_argument, dom.error_);
  return std::move(dom.root);
}

void append_dump_string(std::string& out, std::string_view s) {
  const bool plain = std::all_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
  });
  if (!plain) {
    out += json(std::string(s)).dump();
    return;
  }
  out += '"';
  out += s;
  out += '"';
}

std::string dump_text(const json& v) {
  std::string out;
  append_dump(out, v);
  return out;
}

void append_dump(std::string& out, const json& v) {
  switch (v.type()) {
    case json::value_t::number_integer:
      out += std::to_string(v.get<std::int64_t>());
      return;
    case json::value_t::number_unsigned:
      out += std::to_string(v.get<std::uint64_t>());
      return;
    case json::value_t::boolean:
      out += v.get<bool>() ? "true" : "false";
      return;
    case json::value_t::null:
      out += "null";
      return;
    case json::value_t::string:
      append_dump_string(out, v.get_ref<const std::string&>());
      return;
    case json::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, value] : v.items()) {
        if (!first) out += ',';
        first = false;
        append_dump_string(out, key);
        out += ':';
        append_dump(out, value);
      }
      out += '}';
      return;
    }
    case json::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& value : v) {
        if (!first) out += ',';
        first = false;
        append_dump(out, value);
      }
      out += ']';
      return;
    }
    default:  // floats, binary, discarded
      out += v.dump();
  }
}

json error_body(std::string_view code, std::string_view message, std::string_view field) {
  json e = {{"code", code}, {"message", message}};
  if (!field.empty()) e["field"] = field;
  return {{"error", std::move(e)}};
}

Errc errc_from_wire_code(std::string_view code) noexcept {
  if (code == "bad_request") return Errc::invalid_argument;
  if (code == "validation") return Errc::validation;
  if (code == "unauthorized") return Errc::unauthorized;
  if (code == "forbidden") return Errc::forbidden;
  if (code == "device_revoked") return Errc::forbidden;  // protocol.md "Revocation"
  if (code == "not_found") return Errc::not_found;
  if (code == "deleted") return Errc::deleted;
  if (code == "cursor_ahead") return Errc::cursor_ahead;
  if (code == "payload_too_large") return Errc::payload_too_large;
  if (code == "too_many_requests") return Errc::throttled;
  if (code == "unknown_form") return Errc::unknown_form;
  if (code == "internal" || code == "unavailable") return Errc::server;
  return Errc::protocol;
}

namespace {

// The SAX events of one JSON object, written out again with each member's value
// paired (append_paired_members). Depth 1 is between the object's members; a
// member's value is a scalar event at depth 1 or the containers opened from there.
class PairingSax {
 public:
  PairingSax(std::string& out, const std::function<std::int64_t(const std::string&)>& number)
      : out_(out), number_(number) {}

  bool null() {
    return scalar([&] { out_ += "null"; });
  }
  bool boolean(bool v) {
    return scalar([&] { out_ += v ? "true" : "false"; });
  }
  bool number_integer(json::number_integer_t v) {
    return scalar([&] { out_ += std::to_string(v); });
  }
  bool number_unsigned(json::number_unsigned_t v) {
    return scalar([&] { out_ += std::to_string(v); });
  }
  bool number_float(json::number_float_t v, const std::string&) {
    return scalar([&] { out_ += json(v).dump(); });  // as the parsed value is written
  }
  bool string(std::string& v) {
    return scalar([&] { append_dump_string(out_, v); });
  }
  bool binary(json::binary_t&) { return false; }  // not in JSON text

  bool start_object(std::size_t) { return open(true); }
  bool end_object() { return close('}'); }
  bool start_array(std::size_t) { return open(false); }
  bool end_array() { return close(']'); }

  bool key(std::string& k) {
    if (depth() == 1) {  // a member of the object: its number decides whether it is written
      number_now_ = number_(k);
      skipping_ = number_now_ <= 0;
      if (skipping_) return true;
      if (members_++) out_ += ',';
      append_dump_string(out_, k);
      out_ += ":[";
      return true;
    }
    if (!skipping_) {
      comma();
      append_dump_string(out_, k);
      out_ += ':';
    }
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const json::exception&) { return false; }

  bool done() const { return finished_; }

 private:
  struct Open {
    bool object;
    bool first = true;
  };
  std::size_t depth() const { return open_.size(); }

  // The separator before an element of an array or a member of a nested object.
  void comma() {
    if (!open_.back().first) out_ += ',';
    open_.back().first = false;
  }
  // Where a value starts: a top-level value must be the object itself.
  bool value_start() {
    if (depth() == 0) return false;
    if (depth() > 1 && !open_.back().object && !skipping_) comma();
    return true;
  }
  void member_end() {
    if (!skipping_) {
      out_ += ',';
      out_ += std::to_string(number_now_);
      out_ += ']';
    }
    skipping_ = false;
  }
  template <typename Write>
  bool scalar(Write write) {
    if (!value_start()) return false;
    if (!skipping_) write();
    if (depth() == 1) member_end();
    return true;
  }
  bool open(bool object) {
    if (finished_) return false;
    if (depth() == 0) {
      if (!object) return false;
      out_ += '{';
    } else {
      value_start();
      if (!skipping_) out_ += object ? '{' : '[';
    }
    open_.push_back(Open{object});
    return true;
  }
  bool close(char bracket) {
    open_.pop_back();
    if (depth() == 0) {
      out_ += '}';
      finished_ = true;
      return true;
    }
    if (!skipping_) out_ += bracket;
    if (depth() == 1) member_end();
    return true;
  }

  std::string& out_;
  const std::function<std::int64_t(const std::string&)>& number_;
  std::vector<Open> open_;
  std::int64_t number_now_ = 0;
  bool skipping_ = false;  // the current member is left out
  std::size_t members_ = 0;
  bool finished_ = false;
};

}  // namespace

void append_paired_members(std::string& out, std::string_view object_text,
                           const std::function<std::int64_t(const std::string&)>& number) {
  const std::size_t before = out.size();
  PairingSax sax(out, number);
  const bool ok = json::sax_parse(object_text.begin(), object_text.end(), &sax,
                                  json::input_format_t::json, /*strict=*/true);
  if (!ok || !sax.done()) {
    out.resize(before);
    throw std::invalid_argument("not a JSON object");
  }
}

}  // namespace fieldsync
