// ServerStore: everything the regency server persists (users, tokens, throttling
// counters, forms, records and field versions, the log, conflicts, quarantine,
// processed change ids, devices), as an interface with a SQLite implementation
// (sqlite_store.hpp) and room for a PostgreSQL one shared by several processes.
//
// Nothing above this interface may keep state that several server processes would
// have to share: every such fact lives in the store.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "fieldsync/error.hpp"
#include "fieldsync/form.hpp"
#include "fieldsync/ids.hpp"
#include "fieldsync/protocol.hpp"

namespace fieldsync::server {

// Who makes a request, as resolved from a token.
struct Caller {
  std::string username;
  std::string role;  // "officer" | "admin"
  std::vector<std::string> scopes;
  std::string device_id;  // the device the token was issued to; may be empty

  bool is_admin() const { return role == "admin"; }
  // Admins cover every code; officers the codes under one of their scopes.
  bool covers(std::string_view region_code) const {
    if (is_admin()) return true;
    for (const auto& s : scopes)
      if (scope_covers(s, region_code)) return true;
    return false;
  }
};

// Which log entries / records a read may return: all, or those whose scope is
// covered by one of `scopes` (protocol.md's whole-group prefix rule).
struct ScopeFilter {
  bool all = false;
  std::vector<std::string> scopes;

  static ScopeFilter of(const Caller& caller) { return {caller.is_admin(), caller.scopes}; }
  bool covers(std::string_view region_code) const {
    if (all) return true;
    for (const auto& s : scopes)
      if (scope_covers(s, region_code)) return true;
    return false;
  }
};

struct PasswordHash {
  std::string algorithm;  // "pbkdf2-sha256"
  std::int64_t iterations = 0;
  std::string salt;  // raw bytes
  std::string hash;  // raw bytes
};

struct UserRecord {
  std::string name;
  std::string role;  // "officer" | "admin"
  std::vector<std::string> scopes;
  PasswordHash password;
  bool disabled = false;
  std::int64_t created_at_ms = 0;
};

struct TokenRecord {
  std::string hash;  // SHA-256 of the token, raw bytes; the token itself is never stored
  std::string user;
  std::string device_id;
  std::int64_t created_at_ms = 0;
  std::int64_t expires_at_ms = 0;
  bool revoked = false;
};

// Failed-login bookkeeping for one key ("user:<name>" or "addr:<address>").
struct ThrottleState {
  std::int64_t failures = 0;         // failures in the current window
  std::int64_t window_start_ms = 0;  // when the window began
  std::int64_t blocked_until_ms = 0;
};

struct FieldRow {
  json value;
  std::int64_t version = 0;  // seq of the log entry that last set it
};

struct RecordRow {
  std::string id;
  std::string form;
  std::int64_t form_version = 0;
  std::string scope;
  bool deleted = false;
  std::int64_t version = 0;      // highest seq among field versions, delete and revival
  std::int64_t deleted_seq = 0;  // seq of the last delete (0 = never deleted)
  // Canonical text of the natural key values when all are non-null (duplicate
  // detection); empty when the form has no key or a key field is null.
  std::string key_text;
  // Every field the record ever had, with its value and version; a record is read
  // and written whole.
  std::map<std::string, FieldRow> fields;
};

struct Candidate {
  json value;      // field value; an object of fields (record-level); null for a delete
  std::string op;  // "upsert" | "delete"
  std::string change;
  std::string author;
  std::string device;
  std::string hlc;
  std::string received_at;
  std::string record;  // duplicates: the record this candidate is
  std::int64_t form_version = 0;
};

struct ConflictRow {
  std::int64_t id = 0;
  std::string kind;  // "field" | "delete" | "duplicate_record"
  std::string record;
  std::vector<std::string> records;  // duplicates: every linked record
  std::string form;
  std::string scope;
  std::string field;  // "" for record-level
  std::string status = "open";
  std::int64_t opened_seq = 0;
  std::string opened_at;
  std::vector<Candidate> candidates;
  json resolution;  // null while open
};

struct QuarantineRow {
  std::int64_t id = 0;
  std::string change_id;
  std::string device;
  std::string user;
  json change;  // as received
  RejectReason reason;
  std::string received_at;
};

// The first result given for a change id, kept to answer retries.
struct ProcessedRow {
  std::string change_id;
  std::string content_hash;  // SHA-256 (hex) of the change's canonical JSON
  json result;               // ChangeResult::to_json() of the first answer
};

// What one sync request tells about its device.
struct DeviceUpdate {
  std::string device_id;
  std::string user;
  std::int64_t sync_at_ms = 0;
  std::int64_t changes_received = 0;  // added to the running total
  std::optional<std::string> last_error;
  std::string app_version;  // from User-Agent; empty = keep
  std::int64_t protocol_version = kProtocolVersion;
  std::optional<std::int64_t> clock_offset_ms;
  std::optional<std::int64_t> oldest_late_change_ms;
};

struct DeviceRow {
  std::string device_id;
  std::string user;
  std::int64_t last_sync_at_ms = 0;
  std::string last_error;
  std::int64_t changes_received = 0;
  std::string app_version;
  std::int64_t protocol_version = 0;
  std::optional<std::int64_t> clock_offset_ms;
  std::optional<std::int64_t> oldest_late_change_ms;
};

// An administrator's revocation of a device id (protocol.md "Revocation"): while
// it stands, logins naming the device and syncs from it are refused.
struct DeviceRevocation {
  std::string device_id;
  std::int64_t revoked_at_ms = 0;
  std::string revoked_by;  // the administrator's user name
};

struct RecordState {
  RecordRow row;                       // with its fields
  std::vector<ConflictRef> conflicts;  // every conflict about this record, with status
};

struct PullPage {
  std::vector<LogEntry> entries;
  std::int64_t cursor = 0;
  bool more = false;
};

// The entries a pull leaves out as if returned (protocol.md, additions D and F).
struct PullOmit {
  std::unordered_set<std::int64_t> seqs;  // D: those of the request's own changes
  std::string device_id;                  // F: those of this device's changes ...
  std::int64_t own_through = 0;           // ... whose counter is at most this (0: none)
  // F leaves out at most this many entries per page; the page then ends there with
  // more: true, so one request never reads a whole log of the device's own pushes.
  static constexpr std::int64_t kMaxOwnPerPage = 5000;

  bool own(std::string_view origin) const {
    if (own_through <= 0) return false;
    auto id = ChangeId::parse(origin);
    return id && id->counter <= own_through && id->device_id == device_id;
  }
};

struct RecordsQuery {
  ScopeFilter filter;
  std::string form;          // empty = any
  std::string scope_prefix;  // empty = any
  std::int64_t since = 0;    // records whose version is above
  std::int64_t limit = 500;
};

struct RecordsPage {
  std::vector<RecordState> records;
  std::int64_t cursor = 0;
  bool more = false;
};

struct ConflictQuery {
  std::string status;  // "open" | "resolved" | "" (all)
  std::string kind;    // "" = any
  std::string form;
  std::string record;      // conflicts linking this record
  std::string scope;       // under this scope prefix
  std::int64_t after = 0;  // ids above
  std::int64_t limit = 100;
};

struct ConflictPage {
  std::vector<ConflictRow> conflicts;
  bool more = false;
};

struct QuarantineQuery {
  std::string device;  // "" = any
  std::string user;
  std::int64_t after = 0;
  std::int64_t limit = 100;
};

struct QuarantinePage {
  std::vector<QuarantineRow> rows;
  bool more = false;
};

struct StoreStats {
  std::int64_t head_seq = 0;
  std::int64_t log_entries = 0;
  std::int64_t records = 0;
  std::int64_t open_conflicts = 0;
  std::int64_t quarantined = 0;
  std::int64_t write_transactions = 0;  // committed by this store object
  // WAL checkpoints done by the store's checkpointer thread, and by the writer
  // itself when the WAL grew long (SQLite store; see sqlite_store.cpp).
  std::int64_t wal_checkpoints_background = 0;
  std::int64_t wal_checkpoints_by_writer = 0;
};

// A store failure inside a write transaction. WriteTxn methods throw it; the
// Writer (writer.hpp) catches it at the job boundary and rolls that job back, so
// it never leaves the server library.
struct StoreFailure {
  Error error;
};

// One write transaction. Used by one thread (the writer thread); every method
// may throw StoreFailure. Destroying an uncommitted transaction rolls it back.
class WriteTxn {
 public:
  virtual ~WriteTxn() = default;

  // Commits. On failure everything is rolled back and the error returned.
  virtual Result<void> commit() = 0;
  // Nested undo points for group commit: one per job.
  virtual void savepoint() = 0;
  virtual void release_savepoint() = 0;
  virtual void rollback_to_savepoint() = 0;

  // The next log sequence number. Taken from one counter row inside the
  // transaction, so seqs commit in order even with several writers (design.md).
  virtual std::int64_t next_seq() = 0;

  virtual std::optional<UserRecord> user(const std::string& name) = 0;
  virtual void put_user(const UserRecord& user) = 0;  // insert or replace
  virtual void insert_token(const TokenRecord& token) = 0;
  // Revokes one token; false when there was none.
  virtual bool revoke_token(const std::string& hash) = 0;
  // Revokes every token of a user; returns how many.
  virtual std::int64_t revoke_user_tokens(const std::string& user) = 0;
  virtual ThrottleState throttle(const std::string& key) = 0;
  virtual void put_throttle(const std::string& key, const ThrottleState& state) = 0;
  virtual void clear_throttle(const std::string& key) = 0;

  // The form (latest when `version` is empty).
  virtual std::optional<Form> form(const std::string& id, std::optional<std::int64_t> version) = 0;
  virtual void insert_form(const Form& form, const std::string& published_by,
                           std::int64_t published_at_ms) = 0;

  virtual std::optional<ProcessedRow> processed(const std::string& change_id) = 0;
  virtual void insert_processed(const ProcessedRow& row) = 0;
  // A record with its fields; put_record writes it whole (insert or replace).
  virtual std::optional<RecordRow> record(const std::string& id) = 0;
  virtual void put_record(const RecordRow& row) = 0;
  // put_record with the fields given as their stored text instead of row.fields:
  // {"<field>": [<value>, <version>], ...} in name order, as fields_text() writes.
  virtual void put_record_text(const RecordRow& row, const std::string& fields_text) = 0;
  // A live record of `form` other than `exclude` whose key_text is `key_text`.
  virtual std::optional<std::string> find_live_by_key(const std::string& form,
                                                      const std::string& key_text,
                                                      const std::string& exclude) = 0;
  // The open field/delete conflict of (record, kind, field).
  virtual std::optional<std::int64_t> open_conflict(const std::string& record,
                                                    const std::string& kind,
                                                    const std::string& field) = 0;
  // An open duplicate_record conflict linking `record`.
  virtual std::optional<std::int64_t> open_duplicate_conflict(const std::string& record) = 0;
  // Inserts a conflict (without candidates; `records` are linked) and returns its id.
  virtual std::int64_t insert_conflict(const ConflictRow& row) = 0;
  virtual void link_conflict_record(std::int64_t conflict, const std::string& record) = 0;
  virtual void insert_candidate(std::int64_t conflict, const Candidate& candidate) = 0;
  virtual void insert_log(const LogEntry& entry) = 0;
  virtual void insert_quarantine(const QuarantineRow& row) = 0;
  virtual void update_device(const DeviceUpdate& update) = 0;

  // Conflict resolution (resolve.hpp).
  virtual std::optional<ConflictRow> conflict(std::int64_t id) = 0;  // with records and candidates
  // Marks the conflict resolved with `resolution` (by, at, what, note, seqs).
  virtual void resolve_conflict(std::int64_t id, const json& resolution) = 0;

  // Device revocation (auth.hpp revoke_device / reinstate_device).
  virtual std::optional<DeviceRevocation> device_revocation(const std::string& device_id) = 0;
  virtual void put_device_revocation(const DeviceRevocation& revocation) = 0;  // insert or replace
  // Removes the device's revocation; false when it had none.
  virtual bool delete_device_revocation(const std::string& device_id) = 0;
  // Revokes every live token issued to the device, whoever's; returns how many.
  virtual std::int64_t revoke_device_tokens(const std::string& device_id) = 0;
  // Whether the server has heard of the device: a token was issued to it, it
  // synced, or it is revoked.
  virtual bool device_known(const std::string& device_id) = 0;
};

// The store. Reads are thread-safe and may run concurrently with the writer (they
// see committed data only). begin_write() is for the one writer thread.
class ServerStore {
 public:
  virtual ~ServerStore() = default;

  // Starts a write transaction. Only one may be open at a time per store object.
  virtual Result<std::unique_ptr<WriteTxn>> begin_write() = 0;

  // The highest committed seq (0 for an empty log).
  virtual Result<std::int64_t> head_seq() = 0;
  virtual Result<std::optional<UserRecord>> user(const std::string& name) = 0;
  virtual Result<std::optional<TokenRecord>> token(const std::string& hash) = 0;
  virtual Result<ThrottleState> throttle(const std::string& key) = 0;
  virtual Result<std::vector<Form>> latest_forms() = 0;
  virtual Result<std::optional<Form>> form(const std::string& id,
                                           std::optional<std::int64_t> version) = 0;
  // Log entries with seq > since within `filter`, at most `limit`, from one
  // snapshot; cursor/more as protocol.md's pull. The entries `omit` names are left
  // out as if returned (additions D and F). Precondition: since <= head.
  virtual Result<PullPage> pull(const ScopeFilter& filter, std::int64_t since, std::int64_t limit,
                                const PullOmit& omit = {}) = 0;
  virtual Result<std::optional<RecordState>> record(const std::string& id) = 0;
  virtual Result<RecordsPage> records(const RecordsQuery& query) = 0;
  virtual Result<std::optional<ConflictRow>> conflict(std::int64_t id) = 0;
  virtual Result<ConflictPage> conflicts(const ConflictQuery& query) = 0;
  virtual Result<std::vector<QuarantineRow>> quarantine(std::int64_t after, std::int64_t limit) = 0;
  virtual Result<QuarantinePage> quarantine(const QuarantineQuery& query) = 0;
  virtual Result<std::vector<DeviceRow>> devices() = 0;
  virtual Result<std::optional<LogEntry>> log_entry(std::int64_t seq) = 0;
  virtual Result<std::optional<ProcessedRow>> processed(const std::string& change_id) = 0;
  virtual Result<std::optional<DeviceRow>> device(const std::string& device_id) = 0;
  virtual Result<std::optional<DeviceRevocation>> device_revocation(
      const std::string& device_id) = 0;
  // Every standing device revocation, by device id.
  virtual Result<std::vector<DeviceRevocation>> device_revocations() = 0;
  virtual Result<StoreStats> stats() = 0;
  // Cheap check that the store can be read (for /healthz).
  virtual Result<void> check() = 0;
};

}  // namespace fieldsync::server
