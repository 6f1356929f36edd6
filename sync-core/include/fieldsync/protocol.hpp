// Wire messages of protocol v1 (docs/protocol.md) and their JSON encoding.
//
// Shared by the device core and the server: both encode and decode through these
// functions, so there is one definition of the contract in code.
//
// Decoding is strict about types and lenient about unknown members (a server may
// add fields; clients ignore them). The server decodes a sync request in two
// levels: decode_sync_request_shape() fails the whole request only for the
// request-level errors of protocol.md; decode_change() then checks each change on
// its own, so one bad change is rejected alone.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fieldsync/error.hpp"

namespace fieldsync {

using json = nlohmann::json;

inline constexpr int kProtocolVersion = 1;
inline constexpr std::int64_t kDefaultPullLimit = 500;
inline constexpr std::int64_t kDefaultBatchLimit = 1000;

// Per-field versions; the key "" is the record-level version (base[""]).
using VersionMap = std::map<std::string, std::int64_t>;

struct Change {
  std::string id;      // "<device_id>:<counter>"
  std::string record;  // UUID
  std::string form;
  std::optional<std::int64_t> form_version;  // absent = latest
  std::string scope;
  std::string op = "upsert";     // "upsert" | "delete"
  json fields = json::object();  // upsert: field -> value (null clears)
  VersionMap base;               // field -> version the device last synced
  std::string hlc;               // Hlc text

  json to_json() const;
  bool operator==(const Change&) const = default;
};

// Checks one change's members and types (not the form, not the merge). Errors are
// Errc::validation with `field` naming the member ("op", "base.x", "hlc").
Result<Change> decode_change(const json& j);

struct ConflictRef {
  std::int64_t id = 0;
  std::string kind;    // "field" | "delete" | "duplicate_record"
  std::string field;   // "" for record-level
  std::string status;  // "open" | "resolved"; empty in sync results

  json to_json() const;
  bool operator==(const ConflictRef&) const = default;
};

struct RejectReason {
  std::string code;  // forbidden, unknown_form, validation, stale_form_version, deleted, id_reused
  std::string message;
  std::string field;
  bool operator==(const RejectReason&) const = default;
};

struct ChangeResult {
  std::string id;
  std::string status;  // "applied" | "conflict" | "rejected"
  std::int64_t seq = 0;
  VersionMap versions;
  std::vector<ConflictRef> conflicts;
  bool replayed = false;
  std::optional<RejectReason> error;  // when rejected

  json to_json() const;
  // compact (addition E): versions equal to seq are left out (a reader takes an
  // absent field's version to be seq).
  json to_json(bool compact) const;
  static Result<ChangeResult> from_json(const json& j);
  bool operator==(const ChangeResult&) const = default;
};

struct LogEntry {
  std::int64_t seq = 0;
  std::string record;
  std::string form;
  std::int64_t form_version = 0;
  std::string scope;
  std::string op;  // "upsert" | "delete" | "revive"
  json fields = json::object();
  std::string origin;  // change id, or "admin:<user>:<conflict id>"
  std::string author;
  std::string device;
  std::string hlc;
  std::string received_at;  // RFC 3339
  std::vector<ConflictRef> conflicts;

  json to_json() const;
  static Result<LogEntry> from_json(const json& j);
  bool operator==(const LogEntry&) const = default;
};

struct SyncRequest {
  std::string device_id;
  std::vector<json> raw_changes;  // as received; decode each with decode_change
  std::int64_t since = 0;
  std::int64_t limit = kDefaultPullLimit;
  // Addition D: false leaves the log entries that this request's own changes
  // produced out of the pull (the device has them from its results).
  bool echo = true;
  // Addition E: true leaves out of each result's versions the fields whose
  // version is the result's seq.
  bool compact_versions = false;
  // Addition F: the pull leaves out the entries of this device's changes whose
  // counter is at most this (0: none). The device has their results, or will get
  // them when it sends those changes again.
  std::int64_t omit_own_through = 0;

  // For clients: builds the request body from decoded changes.
  static json encode(const std::string& device_id, const std::vector<Change>& changes,
                     std::int64_t since, std::int64_t limit, bool echo = true,
                     bool compact_versions = false, std::int64_t omit_own_through = 0);
  // The same body as text, in two steps: the "changes" array (which does not
  // depend on `since`, so a client can encode it while the previous request is
  // out), then the body around it. Parsed, encode_text(d, encode_changes(cs), ...)
  // equals encode(d, cs, ...).
  static std::string encode_changes(const std::vector<Change>& changes);
  // The same array for changes whose "fields" the caller holds as JSON text (a
  // device's stored outbox): fields_texts[i], the text of changes[i].fields, is
  // written as it is instead of encoding the values again. Throws
  // std::invalid_argument unless there is one text per change.
  static std::string encode_changes(const std::vector<Change>& changes,
                                    const std::vector<std::string>& fields_texts);
  static std::string encode_text(const std::string& device_id, std::string_view changes_text,
                                 std::int64_t since, std::int64_t limit, bool echo = true,
                                 bool compact_versions = false, std::int64_t omit_own_through = 0);
};

// Request-level checks of protocol.md (400 bad_request on failure): body an
// object, string device_id, changes an array of objects each with a string id,
// since/limit non-negative integers.
Result<SyncRequest> decode_sync_request_shape(const json& body);
// The same, moving the changes out of `body` instead of copying them.
Result<SyncRequest> decode_sync_request_shape(json&& body);

struct SyncResponse {
  std::vector<ChangeResult> results;
  std::vector<LogEntry> changes;
  std::int64_t cursor = 0;
  bool more = false;

  // compact_versions: each result as ChangeResult::to_json(true) (addition E).
  json to_json(bool compact_versions = false) const;
  static Result<SyncResponse> from_json(const json& j);
};

struct LoginRequest {
  std::string username;
  std::string password;
  std::string device_id;
};

struct UserInfo {
  std::string username;
  std::string role;  // "officer" | "admin"
  std::vector<std::string> scopes;
  json to_json() const;
  static Result<UserInfo> from_json(const json& j);
};

struct LoginResponse {
  std::string token;
  std::string expires_at;
  std::vector<std::string> features;
  UserInfo user;
  json to_json() const;
  static Result<LoginResponse> from_json(const json& j);
};

// Parses a request body the way protocol.md's "strict RFC 8259" says: UTF-8, no
// NaN/Infinity or comments, at most `max_depth` nested containers (deeper input is
// refused as soon as it is seen, so a body of a million '[' costs nothing) and no
// object with the same member name twice (ambiguous input is refused, not
// resolved by taking one). Errors are Errc::invalid_argument with a message for
// people.
Result<json> parse_strict_json(std::string_view text, int max_depth);

// Append exactly what v.dump() / json(s).dump() writes. Integers, booleans, null
// and strings that need no escaping are written without the serializer that
// every dump() call sets up (an allocation, the locale, a 512-byte buffer) or its
// character-by-character escaping; objects and arrays are walked the same way.
// Most values of a survey are such, and the stores write tens per change.
void append_dump(std::string& out, const json& v);
void append_dump_string(std::string& out, std::string_view s);
// v.dump() written by append_dump.
std::string dump_text(const json& v);

// Appends the JSON object `object_text` again with every member's value paired
// with a number: {"a": va, ...} becomes {"a":[va,n],...} with n = number("a"),
// and a member whose n is 0 or less is left out. Members keep their order in the
// text and values are written as append_dump writes them once parsed, so for the
// text dump() writes, the result is what pairing the parsed object writes. The
// text is read with nlohmann's SAX parser: no value is built. Throws
// std::invalid_argument if it is not one JSON object.
void append_paired_members(std::string& out, std::string_view object_text,
                           const std::function<std::int64_t(const std::string&)>& number);

// {"error": {"code": ..., "message": ..., ["field": ...]}}
json error_body(std::string_view code, std::string_view message, std::string_view field = {});

// Maps a protocol error code string to the closest Errc (unknown -> protocol).
Errc errc_from_wire_code(std::string_view code) noexcept;

}  // namespace fieldsync
