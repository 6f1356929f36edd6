// SQLite implementation of the server store (sqlite_store.hpp). Failures inside are
// thrown as StoreFailure; read entry points turn them into Result values, write
// transactions let them reach the Writer, which rolls the job back.
#include "sqlite_store.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "crash_points.hpp"

namespace fieldsync::server {
namespace {

constexpr std::string_view kFormatMarker = "fieldsync-server-store";

// Step N takes a file from user_version N-1 to N. Never edit a released step.
struct Migration {
  int version;
  const char* sql;
};
constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO counters(name, value) VALUES('seq', 0);
CREATE TABLE users(
  name TEXT PRIMARY KEY,
  role TEXT NOT NULL,
  scopes TEXT NOT NULL,
  pw_algorithm TEXT NOT NULL,
  pw_iterations INTEGER NOT NULL,
  pw_salt BLOB NOT NULL,
  pw_hash BLOB NOT NULL,
  disabled INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE tokens(
  hash BLOB PRIMARY KEY,
  user TEXT NOT NULL,
  device_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE INDEX tokens_by_user ON tokens(user);
CREATE TABLE login_throttle(
  key TEXT PRIMARY KEY,
  failures INTEGER NOT NULL,
  window_start INTEGER NOT NULL,
  blocked_until INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE forms(
  id TEXT NOT NULL,
  version INTEGER NOT NULL,
  definition TEXT NOT NULL,
  published_by TEXT NOT NULL,
  published_at INTEGER NOT NULL,
  PRIMARY KEY(id, version)) WITHOUT ROWID;
CREATE TABLE records(
  id TEXT PRIMARY KEY,
  form TEXT NOT NULL,
  form_version INTEGER NOT NULL,
  scope TEXT NOT NULL,
  deleted INTEGER NOT NULL,
  version INTEGER NOT NULL,
  deleted_seq INTEGER NOT NULL,
  key_text TEXT);
CREATE INDEX records_by_version ON records(version);
CREATE INDEX records_by_key ON records(form, key_text) WHERE key_text IS NOT NULL AND deleted = 0;
CREATE TABLE field_values(
  record TEXT NOT NULL,
  field TEXT NOT NULL,
  value TEXT NOT NULL,
  version INTEGER NOT NULL,
  PRIMARY KEY(record, field)) WITHOUT ROWID;
CREATE TABLE log(
  seq INTEGER PRIMARY KEY,
  record TEXT NOT NULL,
  form TEXT NOT NULL,
  form_version INTEGER NOT NULL,
  scope TEXT NOT NULL,
  op TEXT NOT NULL,
  fields TEXT NOT NULL,
  origin TEXT NOT NULL,
  author TEXT NOT NULL,
  device TEXT NOT NULL,
  hlc TEXT NOT NULL,
  received_at TEXT NOT NULL,
  conflicts TEXT);
CREATE INDEX log_by_record ON log(record, seq);
CREATE TABLE conflicts(
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  record TEXT NOT NULL,
  form TEXT NOT NULL,
  scope TEXT NOT NULL,
  field TEXT NOT NULL,
  status TEXT NOT NULL,
  opened_seq INTEGER NOT NULL,
  opened_at TEXT NOT NULL,
  resolution TEXT);
CREATE UNIQUE INDEX conflicts_open ON conflicts(record, kind, field) WHERE status = 'open';
CREATE TABLE conflict_records(
  conflict INTEGER NOT NULL,
  record TEXT NOT NULL,
  PRIMARY KEY(conflict, record)) WITHOUT ROWID;
CREATE INDEX conflict_records_by_record ON conflict_records(record, conflict);
CREATE TABLE candidates(
  id INTEGER PRIMARY KEY,
  conflict INTEGER NOT NULL,
  value TEXT NOT NULL,
  op TEXT NOT NULL,
  change TEXT NOT NULL,
  author TEXT NOT NULL,
  device TEXT NOT NULL,
  hlc TEXT NOT NULL,
  received_at TEXT NOT NULL,
  record TEXT NOT NULL,
  form_version INTEGER NOT NULL);
CREATE INDEX candidates_by_conflict ON candidates(conflict, id);
CREATE TABLE quarantine(
  id INTEGER PRIMARY KEY,
  change_id TEXT NOT NULL,
  device TEXT NOT NULL,
  user TEXT NOT NULL,
  change TEXT NOT NULL,
  code TEXT NOT NULL,
  message TEXT NOT NULL,
  field TEXT NOT NULL,
  received_at TEXT NOT NULL);
CREATE INDEX quarantine_by_device ON quarantine(device, id);
CREATE TABLE processed(
  change_id TEXT PRIMARY KEY,
  content_hash TEXT NOT NULL,
  result TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE devices(
  device_id TEXT PRIMARY KEY,
  user TEXT NOT NULL,
  last_sync_at INTEGER NOT NULL,
  last_error TEXT NOT NULL DEFAULT '',
  changes_received INTEGER NOT NULL DEFAULT 0,
  app_version TEXT NOT NULL DEFAULT '',
  protocol_version INTEGER NOT NULL,
  clock_offset_ms INTEGER,
  oldest_late_change_ms INTEGER) WITHOUT ROWID;
)sql"},
    // Version 2: a record's field values and versions move into one JSON column of
    // its row ({"<field>": [<value>, <version>]}), so the merge reads and writes a
    // record with one statement instead of one per field.
    {2, R"sql(
ALTER TABLE records ADD COLUMN fields TEXT NOT NULL DEFAULT '{}';
UPDATE records SET fields = coalesce(
  (SELECT json_group_object(field, json_array(json(value), version))
   FROM field_values WHERE field_values.record = records.id), '{}');
DROP TABLE field_values;
)sql"},
    // Version 3: device revocation by an administrator (issue #5).
    {3, R"sql(
CREATE TABLE device_revocations(
  device_id TEXT PRIMARY KEY,
  revoked_at INTEGER NOT NULL,
  revoked_by TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX tokens_by_device ON tokens(device_id);
)sql"},
};
static_assert(std::size(kMigrations) == kServerSchemaVersion, "one migration per schema version");

[[noreturn]] void fail(Errc code, std::string message) {
  throw StoreFailure{Error(code, std::move(message))};
}

Errc errc_from_sqlite(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Errc::busy;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Errc::corrupt;
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_NOMEM:
      return Errc::io;
    default:
      return Errc::internal;
  }
}

// One prepared statement in use; resets it (and clears bindings) on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~Stmt() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, std::int64_t v) {
    check(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Stmt& bind(int i, std::string_view v) {
    check(sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
    return *this;
  }
  Stmt& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  Stmt& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
  Stmt& bind_blob(int i, std::string_view v) {
    check(sqlite3_bind_blob64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT));
    return *this;
  }
  Stmt& bind_null(int i) {
    check(sqlite3_bind_null(stmt_, i));
    return *this;
  }
  Stmt& bind(int i, const std::optional<std::int64_t>& v) { return v ? bind(i, *v) : bind_null(i); }

  // True when a row is available.
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(errc_from_sqlite(rc), std::string("sqlite: ") + sqlite3_errmsg(db_));
  }
  void run() {
    while (step()) {
    }
  }

  bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::optional<std::int64_t> opt_int64(int col) const {
    if (is_null(col)) return std::nullopt;
    return int64(col);
  }
  std::string text(int col) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }
  std::string blob(int col) const {
    auto p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }
  json json_col(int col) const {
    if (is_null(col)) return nullptr;
    std::string t = text(col);
    json j = json::parse(t, nullptr, false);
    if (j.is_discarded()) fail(Errc::corrupt, "a stored JSON value cannot be read");
    return j;
  }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK)
      fail(errc_from_sqlite(rc), std::string("sqlite bind: ") + sqlite3_errmsg(db_));
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

// One connection with its prepared statements cached by SQL text.
class Connection {
 public:
  static std::unique_ptr<Connection> open(const std::string& path, bool create,
                                          int busy_timeout_ms) {
    sqlite3* db = nullptr;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
    if (rc != SQLITE_OK) {
      std::string message = db ? sqlite3_errmsg(db) : "out of memory";
      sqlite3_close(db);
      fail(errc_from_sqlite(rc), "cannot open " + path + ": " + message);
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, busy_timeout_ms);
    return std::unique_ptr<Connection>(new Connection(db));
  }
  ~Connection() {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
    sqlite3_close(db_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  Stmt query(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      sqlite3_stmt* stmt = nullptr;
      int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                                  SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
      if (rc != SQLITE_OK)
        fail(errc_from_sqlite(rc), std::string("sqlite prepare: ") + sqlite3_errmsg(db_));
      it = cache_.emplace(sql, stmt).first;
    }
    return Stmt(db_, it->second);
  }

  void exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string message = err ? err : sqlite3_errmsg(db_);
      sqlite3_free(err);
      fail(errc_from_sqlite(rc), "sqlite: " + message);
    }
  }
  void exec_noexcept(const char* sql) noexcept {
    sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  }
  bool in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }
  sqlite3* handle() const { return db_; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;
};

template <class F>
auto guarded(F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const StoreFailure& f) {
    return f.error;
  } catch (const json::exception& e) {
    return Error(Errc::internal, std::string("json: ") + e.what());
  } catch (const std::bad_alloc&) {
    return Error(Errc::io, "out of memory");
  } catch (const std::exception& e) {
    return Error(Errc::internal, e.what());
  }
}

std::string scopes_text(const std::vector<std::string>& scopes) {
  return json(scopes).dump();
}

std::vector<std::string> scopes_from(const Stmt& q, int col) {
  json j = q.json_col(col);
  if (!j.is_array()) fail(Errc::corrupt, "stored user scopes are not a list");
  return j.get<std::vector<std::string>>();
}

// A SQL condition restricting `column` to the scopes of `filter`, with its
// parameters; appended with AND. Index-friendly: prefix P covers P itself and the
// range ("P.", "P/"), '/' being the byte after '.'.
struct ScopeClause {
  std::string sql;
  std::vector<std::string> params;
};

ScopeClause scope_clause(const std::vector<std::string>& scopes, const std::string& column,
                         int first_param) {
  ScopeClause c;
  if (scopes.empty()) {
    c.sql = "0";
    return c;
  }
  int p = first_param;
  c.sql = "(";
  for (std::size_t i = 0; i < scopes.size(); ++i) {
    if (i) c.sql += " OR ";
    c.sql += "(" + column + " = ?" + std::to_string(p) + " OR (" + column + " > ?" +
             std::to_string(p + 1) + " AND " + column + " < ?" + std::to_string(p + 2) + "))";
    c.params.push_back(scopes[i]);
    c.params.push_back(scopes[i] + ".");
    c.params.push_back(scopes[i] + "/");
    p += 3;
  }
  c.sql += ")";
  return c;
}

// A stored definition read before is not parsed again: every sync request reads
// its form, and parsing the KLA form cost ~0.25 ms of the writer's time, a few
// percent of a small sync. Keyed by the whole text, so a cached form is always
// the one the row holds; few forms exist, and the cache starts over past 64.
Form parse_stored_form(const std::string& text) {
  static std::mutex mutex;
  static std::unordered_map<std::string, Form> parsed;
  {
    std::lock_guard lock(mutex);
    if (auto it = parsed.find(text); it != parsed.end()) return it->second;
  }
  auto f = Form::parse_text(text);
  if (!f) fail(Errc::corrupt, "a stored form cannot be read: " + f.error().to_string());
  std::lock_guard lock(mutex);
  if (parsed.size() >= 64) parsed.clear();
  return parsed.insert_or_assign(text, std::move(f).value()).first->second;
}

std::vector<ConflictRef> conflicts_from(const json& j) {
  std::vector<ConflictRef> out;
  if (!j.is_array()) return out;
  for (const auto& c : j) {
    ConflictRef r;
    r.id = c.value("id", std::int64_t{0});
    r.kind = c.value("kind", std::string());
    r.field = c.value("field", std::string());
    r.status = c.value("status", std::string());
    out.push_back(std::move(r));
  }
  return out;
}

// ---- queries shared by the write transaction and the read connections ------

const std::string kLogColumns =
    "seq, record, form, form_version, scope, op, fields, origin, author, device, hlc, received_at, "
    "conflicts";

LogEntry read_log(const Stmt& q) {
  LogEntry e;
  e.seq = q.int64(0);
  e.record = q.text(1);
  e.form = q.text(2);
  e.form_version = q.int64(3);
  e.scope = q.text(4);
  e.op = q.text(5);
  e.fields = q.json_col(6);
  e.origin = q.text(7);
  e.author = q.text(8);
  e.device = q.text(9);
  e.hlc = q.text(10);
  e.received_at = q.text(11);
  e.conflicts = conflicts_from(q.json_col(12));
  return e;
}

std::optional<UserRecord> load_user(Connection& c, const std::string& name) {
  auto q = c.query(
      "SELECT name, role, scopes, pw_algorithm, pw_iterations, pw_salt, pw_hash, disabled, "
      "created_at "
      "FROM users WHERE name = ?1");
  q.bind(1, name);
  if (!q.step()) return std::nullopt;
  UserRecord u;
  u.name = q.text(0);
  u.role = q.text(1);
  u.scopes = scopes_from(q, 2);
  u.password.algorithm = q.text(3);
  u.password.iterations = q.int64(4);
  u.password.salt = q.blob(5);
  u.password.hash = q.blob(6);
  u.disabled = q.int64(7) != 0;
  u.created_at_ms = q.int64(8);
  return u;
}

ThrottleState load_throttle(Connection& c, const std::string& key) {
  auto q =
      c.query("SELECT failures, window_start, blocked_until FROM login_throttle WHERE key = ?1");
  q.bind(1, key);
  ThrottleState s;
  if (q.step()) {
    s.failures = q.int64(0);
    s.window_start_ms = q.int64(1);
    s.blocked_until_ms = q.int64(2);
  }
  return s;
}

std::optional<Form> load_form(Connection& c, const std::string& id,
                              std::optional<std::int64_t> version) {
  if (version) {
    auto q = c.query("SELECT definition FROM forms WHERE id = ?1 AND version = ?2");
    q.bind(1, id).bind(2, *version);
    if (!q.step()) return std::nullopt;
    return parse_stored_form(q.text(0));
  }
  auto q = c.query("SELECT definition FROM forms WHERE id = ?1 ORDER BY version DESC LIMIT 1");
  q.bind(1, id);
  if (!q.step()) return std::nullopt;
  return parse_stored_form(q.text(0));
}

std::int64_t load_head(Connection& c) {
  auto q = c.query("SELECT value FROM counters WHERE name = 'seq'");
  if (!q.step()) fail(Errc::corrupt, "the seq counter is missing");
  return q.int64(0);
}

const std::string kRecordColumns =
    "id, form, form_version, scope, deleted, version, deleted_seq, key_text, fields";

// The fields column: {"<field>": [<value>, <version>], ...} in name order, which
// is what a json object of them dumps to. Written here rather than built as
// a json object first, which copied every value (the writer's hottest path); the
// values and any name that needs escaping are still written by the library.

std::string fields_text(const std::map<std::string, FieldRow>& fields) {
  std::string out;
  out.reserve(48 * fields.size() + 2);
  out += '{';
  for (const auto& [name, f] : fields) {
    if (out.size() > 1) out += ',';
    append_dump_string(out, name);
    out += ":[";
    append_dump(out, f.value);
    out += ',';
    out += std::to_string(f.version);
    out += ']';
  }
  out += '}';
  return out;
}

std::map<std::string, FieldRow> fields_from(const Stmt& q, int col) {
  json j = q.json_col(col);
  if (!j.is_object()) fail(Errc::corrupt, "stored record fields are not an object");
  std::map<std::string, FieldRow> out;
  for (auto& [name, pair] : j.items()) {
    if (!pair.is_array() || pair.size() != 2 || !pair[1].is_number_integer())
      fail(Errc::corrupt, "stored field " + name + " is not [value, version]");
    out.emplace(name, FieldRow{std::move(pair[0]), pair[1].get<std::int64_t>()});
  }
  return out;
}

RecordRow read_record_row(const Stmt& q) {
  RecordRow r;
  r.id = q.text(0);
  r.form = q.text(1);
  r.form_version = q.int64(2);
  r.scope = q.text(3);
  r.deleted = q.int64(4) != 0;
  r.version = q.int64(5);
  r.deleted_seq = q.int64(6);
  r.key_text = q.is_null(7) ? std::string() : q.text(7);
  r.fields = fields_from(q, 8);
  return r;
}

std::optional<RecordRow> load_record(Connection& c, const std::string& id) {
  // Built once: this runs for every change a push carries.
  static const std::string sql = "SELECT " + kRecordColumns + " FROM records WHERE id = ?1";
  auto q = c.query(sql);
  q.bind(1, id);
  if (!q.step()) return std::nullopt;
  return read_record_row(q);
}

RecordState load_record_state(Connection& c, RecordRow row) {
  RecordState s;
  {
    auto q = c.query(
        "SELECT c.id, c.kind, c.field, c.status FROM conflict_records cr "
        "JOIN conflicts c ON c.id = cr.conflict WHERE cr.record = ?1 ORDER BY c.id");
    q.bind(1, row.id);
    while (q.step())
      s.conflicts.push_back(ConflictRef{q.int64(0), q.text(1), q.text(2), q.text(3)});
  }
  s.row = std::move(row);
  return s;
}

std::optional<ProcessedRow> load_processed(Connection& c, const std::string& change_id) {
  auto q = c.query("SELECT change_id, content_hash, result FROM processed WHERE change_id = ?1");
  q.bind(1, change_id);
  if (!q.step()) return std::nullopt;
  return ProcessedRow{q.text(0), q.text(1), q.json_col(2)};
}

std::optional<ConflictRow> load_conflict(Connection& c, std::int64_t id) {
  ConflictRow row;
  {
    auto q = c.query(
        "SELECT id, kind, record, form, scope, field, status, opened_seq, opened_at, resolution "
        "FROM conflicts WHERE id = ?1");
    q.bind(1, id);
    if (!q.step()) return std::nullopt;
    row.id = q.int64(0);
    row.kind = q.text(1);
    row.record = q.text(2);
    row.form = q.text(3);
    row.scope = q.text(4);
    row.field = q.text(5);
    row.status = q.text(6);
    row.opened_seq = q.int64(7);
    row.opened_at = q.text(8);
    row.resolution = q.json_col(9);
  }
  {
    auto q = c.query("SELECT record FROM conflict_records WHERE conflict = ?1 ORDER BY record");
    q.bind(1, id);
    while (q.step()) row.records.push_back(q.text(0));
  }
  {
    auto q = c.query(
        "SELECT value, op, change, author, device, hlc, received_at, record, form_version "
        "FROM candidates WHERE conflict = ?1 ORDER BY id");
    q.bind(1, id);
    while (q.step())
      row.candidates.push_back(Candidate{q.json_col(0), q.text(1), q.text(2), q.text(3), q.text(4),
                                         q.text(5), q.text(6), q.text(7), q.int64(8)});
  }
  return row;
}

DeviceRow read_device(const Stmt& q) {
  return DeviceRow{q.text(0), q.text(1),  q.int64(2),     q.text(3),     q.int64(4),
                   q.text(5), q.int64(6), q.opt_int64(7), q.opt_int64(8)};
}

const std::string kDeviceColumns =
    "device_id, user, last_sync_at, last_error, changes_received, app_version, protocol_version, "
    "clock_offset_ms, oldest_late_change_ms";

// ---- device revocation (issue #5) ------------------------------------------
// Self-contained: the device_revocations table of migration 3 and the tokens'
// device_id column; used by both the write transaction and the read side.

DeviceRevocation read_device_revocation(const Stmt& q) {
  return DeviceRevocation{q.text(0), q.int64(1), q.text(2)};
}

std::optional<DeviceRevocation> load_device_revocation(Connection& c,
                                                       const std::string& device_id) {
  auto q = c.query(
      "SELECT device_id, revoked_at, revoked_by FROM device_revocations WHERE device_id = ?1");
  q.bind(1, device_id);
  if (!q.step()) return std::nullopt;
  return read_device_revocation(q);
}

std::vector<DeviceRevocation> load_device_revocations(Connection& c) {
  std::vector<DeviceRevocation> out;
  auto q = c.query(
      "SELECT device_id, revoked_at, revoked_by FROM device_revocations ORDER BY device_id");
  while (q.step()) out.push_back(read_device_revocation(q));
  return out;
}

void store_device_revocation(Connection& c, const DeviceRevocation& r) {
  c.query(
       "INSERT OR REPLACE INTO device_revocations(device_id, revoked_at, revoked_by) "
       "VALUES(?1, ?2, ?3)")
      .bind(1, r.device_id)
      .bind(2, r.revoked_at_ms)
      .bind(3, r.revoked_by)
      .run();
}

bool remove_device_revocation(Connection& c, const std::string& device_id) {
  auto q = c.query("DELETE FROM device_revocations WHERE device_id = ?1 RETURNING 1");
  q.bind(1, device_id);
  bool removed = false;
  while (q.step()) removed = true;
  return removed;
}

std::int64_t revoke_tokens_of_device(Connection& c, const std::string& device_id) {
  auto q =
      c.query("UPDATE tokens SET revoked = 1 WHERE device_id = ?1 AND revoked = 0 RETURNING 1");
  q.bind(1, device_id);
  std::int64_t n = 0;
  while (q.step()) ++n;
  return n;
}

bool is_device_known(Connection& c, const std::string& device_id) {
  auto q = c.query(
      "SELECT EXISTS(SELECT 1 FROM tokens WHERE device_id = ?1) OR "
      "EXISTS(SELECT 1 FROM devices WHERE device_id = ?1) OR "
      "EXISTS(SELECT 1 FROM device_revocations WHERE device_id = ?1)");
  q.bind(1, device_id);
  return q.step() && q.int64(0) != 0;
}

// ---- the write transaction -------------------------------------------------

class SqliteWriteTxn final : public WriteTxn {
 public:
  SqliteWriteTxn(Connection& c, std::atomic<std::int64_t>& commits,
                 std::unique_lock<std::mutex> lock)
      : c_(c), commits_(commits), lock_(std::move(lock)) {
    c_.exec("BEGIN IMMEDIATE");
  }
  ~SqliteWriteTxn() override {
    if (c_.in_transaction()) c_.exec_noexcept("ROLLBACK");
  }

  Result<void> commit() override {
    return guarded([&]() -> Result<void> {
      if (seq_ && *seq_ != seq_stored_)
        c_.query("UPDATE counters SET value = ?1 WHERE name = 'seq'").bind(1, *seq_).run();
      c_.exec("COMMIT");
      ++commits_;
      return {};
    });
  }
  void savepoint() override {
    c_.exec("SAVEPOINT job");
    seq_at_savepoint_ = seq_;
  }
  void release_savepoint() override { c_.exec("RELEASE job"); }
  void rollback_to_savepoint() override {
    c_.exec("ROLLBACK TO job; RELEASE job");
    seq_ = seq_at_savepoint_;
  }

  // The seq counter is read once per transaction and written back by commit():
  // one UPDATE per transaction instead of one per change. The transaction holds
  // the database's write lock from BEGIN IMMEDIATE, so no other connection or
  // process can move the counter meanwhile; each transaction reads it afresh.
  std::int64_t next_seq() override {
    if (!seq_) seq_ = seq_stored_ = load_head(c_);
    return ++*seq_;
  }

  std::optional<UserRecord> user(const std::string& name) override { return load_user(c_, name); }
  void put_user(const UserRecord& u) override {
    c_.query(
          "INSERT OR REPLACE INTO users(name, role, scopes, pw_algorithm, pw_iterations, pw_salt, "
          "pw_hash, "
          "disabled, created_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
        .bind(1, u.name)
        .bind(2, u.role)
        .bind(3, scopes_text(u.scopes))
        .bind(4, u.password.algorithm)
        .bind(5, u.password.iterations)
        .bind_blob(6, u.password.salt)
        .bind_blob(7, u.password.hash)
        .bind(8, std::int64_t{u.disabled ? 1 : 0})
        .bind(9, u.created_at_ms)
        .run();
  }
  void insert_token(const TokenRecord& t) override {
    c_.query(
          "INSERT INTO tokens(hash, user, device_id, created_at, expires_at, revoked) "
          "VALUES(?1, ?2, ?3, ?4, ?5, ?6)")
        .bind_blob(1, t.hash)
        .bind(2, t.user)
        .bind(3, t.device_id)
        .bind(4, t.created_at_ms)
        .bind(5, t.expires_at_ms)
        .bind(6, std::int64_t{t.revoked ? 1 : 0})
        .run();
  }
  bool revoke_token(const std::string& hash) override {
    auto q = c_.query("UPDATE tokens SET revoked = 1 WHERE hash = ?1 AND revoked = 0 RETURNING 1");
    q.bind_blob(1, hash);
    return q.step();
  }
  std::int64_t revoke_user_tokens(const std::string& user) override {
    auto q = c_.query("UPDATE tokens SET revoked = 1 WHERE user = ?1 AND revoked = 0 RETURNING 1");
    q.bind(1, user);
    std::int64_t n = 0;
    while (q.step()) ++n;
    return n;
  }
  ThrottleState throttle(const std::string& key) override { return load_throttle(c_, key); }
  void put_throttle(const std::string& key, const ThrottleState& s) override {
    c_.query(
          "INSERT OR REPLACE INTO login_throttle(key, failures, window_start, blocked_until) "
          "VALUES(?1, ?2, ?3, ?4)")
        .bind(1, key)
        .bind(2, s.failures)
        .bind(3, s.window_start_ms)
        .bind(4, s.blocked_until_ms)
        .run();
  }
  void clear_throttle(const std::string& key) override {
    c_.query("DELETE FROM login_throttle WHERE key = ?1").bind(1, key).run();
  }

  std::optional<Form> form(const std::string& id, std::optional<std::int64_t> version) override {
    return load_form(c_, id, version);
  }
  void insert_form(const Form& form, const std::string& by, std::int64_t at_ms) override {
    c_.query(
          "INSERT INTO forms(id, version, definition, published_by, published_at) "
          "VALUES(?1, ?2, ?3, ?4, ?5)")
        .bind(1, form.id)
        .bind(2, form.version)
        .bind(3, form.to_json().dump())
        .bind(4, by)
        .bind(5, at_ms)
        .run();
  }

  std::optional<ProcessedRow> processed(const std::string& change_id) override {
    return load_processed(c_, change_id);
  }
  void insert_processed(const ProcessedRow& row) override {
    c_.query("INSERT INTO processed(change_id, content_hash, result) VALUES(?1, ?2, ?3)")
        .bind(1, row.change_id)
        .bind(2, row.content_hash)
        .bind(3, row.result.dump())
        .run();
  }
  std::optional<RecordRow> record(const std::string& id) override { return load_record(c_, id); }
  void put_record(const RecordRow& r) override { put_record_text(r, fields_text(r.fields)); }
  void put_record_text(const RecordRow& r, const std::string& text) override {
    // An edit that leaves form, deleted and key_text as they are does not name
    // them, so SQLite leaves records_by_key alone: one random index page fewer
    // per edit in the WAL. Any other write of an existing row finds the WHERE
    // false, changes nothing, and is made by the full UPDATE below.
    static const std::string upsert =
        "INSERT INTO records(" + kRecordColumns +
        ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(id) DO UPDATE SET "
        "form_version = excluded.form_version, scope = excluded.scope, version = "
        "excluded.version, deleted_seq = excluded.deleted_seq, fields = excluded.fields "
        "WHERE form = excluded.form AND deleted = excluded.deleted AND key_text IS "
        "excluded.key_text";
    static const std::string update =
        "UPDATE records SET form = ?2, form_version = ?3, scope = ?4, deleted = ?5, version = ?6, "
        "deleted_seq = ?7, key_text = ?8, fields = ?9 WHERE id = ?1";
    auto write = [&](const std::string& sql) {
      auto q = c_.query(sql);
      q.bind(1, r.id)
          .bind(2, r.form)
          .bind(3, r.form_version)
          .bind(4, r.scope)
          .bind(5, std::int64_t{r.deleted ? 1 : 0})
          .bind(6, r.version)
          .bind(7, r.deleted_seq);
      if (r.key_text.empty()) {
        q.bind_null(8);
      } else {
        q.bind(8, r.key_text);
      }
      q.bind(9, text);
      q.run();
      return sqlite3_changes(c_.handle());
    };
    if (write(upsert) == 0 && write(update) != 1)
      fail(Errc::internal, "record " + r.id + " was neither inserted nor updated");
  }
  std::optional<std::string> find_live_by_key(const std::string& form, const std::string& key_text,
                                              const std::string& exclude) override {
    auto q = c_.query(
        "SELECT id FROM records WHERE form = ?1 AND key_text = ?2 AND deleted = 0 AND id <> ?3 "
        "ORDER BY version LIMIT 1");
    q.bind(1, form).bind(2, key_text).bind(3, exclude);
    if (!q.step()) return std::nullopt;
    return q.text(0);
  }
  std::optional<std::int64_t> open_conflict(const std::string& record, const std::string& kind,
                                            const std::string& field) override {
    auto q = c_.query(
        "SELECT id FROM conflicts WHERE record = ?1 AND kind = ?2 AND field = ?3 AND status = "
        "'open'");
    q.bind(1, record).bind(2, kind).bind(3, field);
    if (!q.step()) return std::nullopt;
    return q.int64(0);
  }
  std::optional<std::int64_t> open_duplicate_conflict(const std::string& record) override {
    auto q = c_.query(
        "SELECT c.id FROM conflict_records cr JOIN conflicts c ON c.id = cr.conflict "
        "WHERE cr.record = ?1 AND c.kind = 'duplicate_record' AND c.status = 'open' ORDER BY c.id "
        "LIMIT 1");
    q.bind(1, record);
    if (!q.step()) return std::nullopt;
    return q.int64(0);
  }
  std::int64_t insert_conflict(const ConflictRow& row) override {
    std::int64_t id = 0;
    {
      auto q = c_.query(
          "INSERT INTO conflicts(kind, record, form, scope, field, status, opened_seq, opened_at, "
          "resolution) "
          "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL) RETURNING id");
      q.bind(1, row.kind)
          .bind(2, row.record)
          .bind(3, row.form)
          .bind(4, row.scope)
          .bind(5, row.field)
          .bind(6, row.status)
          .bind(7, row.opened_seq)
          .bind(8, row.opened_at);
      if (!q.step()) fail(Errc::internal, "inserting a conflict returned no id");
      id = q.int64(0);
    }
    link_conflict_record(id, row.record);
    for (const auto& r : row.records) link_conflict_record(id, r);
    return id;
  }
  void link_conflict_record(std::int64_t conflict, const std::string& record) override {
    c_.query("INSERT OR IGNORE INTO conflict_records(conflict, record) VALUES(?1, ?2)")
        .bind(1, conflict)
        .bind(2, record)
        .run();
  }
  void insert_candidate(std::int64_t conflict, const Candidate& k) override {
    c_.query(
          "INSERT INTO candidates(conflict, value, op, change, author, device, hlc, received_at, "
          "record, "
          "form_version) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")
        .bind(1, conflict)
        .bind(2, k.value.dump())
        .bind(3, k.op)
        .bind(4, k.change)
        .bind(5, k.author)
        .bind(6, k.device)
        .bind(7, k.hlc)
        .bind(8, k.received_at)
        .bind(9, k.record)
        .bind(10, k.form_version)
        .run();
  }
  void insert_log(const LogEntry& e) override {
    static const std::string sql =
        "INSERT INTO log(" + kLogColumns +
        ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
    auto q = c_.query(sql);
    q.bind(1, e.seq)
        .bind(2, e.record)
        .bind(3, e.form)
        .bind(4, e.form_version)
        .bind(5, e.scope)
        .bind(6, e.op)
        .bind(7, dump_text(e.fields))
        .bind(8, e.origin)
        .bind(9, e.author)
        .bind(10, e.device)
        .bind(11, e.hlc)
        .bind(12, e.received_at);
    if (e.conflicts.empty()) {
      q.bind_null(13);
    } else {
      json cs = json::array();
      for (const auto& c : e.conflicts) cs.push_back(c.to_json());
      q.bind(13, cs.dump());
    }
    q.run();
    FIELDSYNC_CRASH_POINT("after_log_insert");
  }
  void insert_quarantine(const QuarantineRow& r) override {
    c_.query(
          "INSERT INTO quarantine(change_id, device, user, change, code, message, field, "
          "received_at) "
          "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
        .bind(1, r.change_id)
        .bind(2, r.device)
        .bind(3, r.user)
        .bind(4, r.change.dump())
        .bind(5, r.reason.code)
        .bind(6, r.reason.message)
        .bind(7, r.reason.field)
        .bind(8, r.received_at)
        .run();
  }
  void update_device(const DeviceUpdate& d) override {
    auto q = c_.query(
        "INSERT INTO devices(device_id, user, last_sync_at, last_error, changes_received, "
        "app_version, "
        "protocol_version, clock_offset_ms, oldest_late_change_ms) "
        "VALUES(?1, ?2, ?3, coalesce(?4, ''), ?5, ?6, ?7, ?8, ?9) "
        "ON CONFLICT(device_id) DO UPDATE SET user = excluded.user, "
        "last_sync_at = max(last_sync_at, excluded.last_sync_at), "
        "last_error = coalesce(?4, last_error), "
        "changes_received = changes_received + excluded.changes_received, "
        "app_version = CASE WHEN excluded.app_version = '' THEN app_version ELSE "
        "excluded.app_version END, "
        "protocol_version = excluded.protocol_version, "
        "clock_offset_ms = coalesce(excluded.clock_offset_ms, clock_offset_ms), "
        "oldest_late_change_ms = coalesce(excluded.oldest_late_change_ms, oldest_late_change_ms)");
    q.bind(1, d.device_id)
        .bind(2, d.user)
        .bind(3, d.sync_at_ms)
        .bind(5, d.changes_received)
        .bind(6, d.app_version)
        .bind(7, d.protocol_version)
        .bind(8, d.clock_offset_ms)
        .bind(9, d.oldest_late_change_ms);
    if (d.last_error) {
      q.bind(4, *d.last_error);
    } else {
      q.bind_null(4);  // keeps the previous error
    }
    q.run();
  }

  std::optional<ConflictRow> conflict(std::int64_t id) override { return load_conflict(c_, id); }
  void resolve_conflict(std::int64_t id, const json& resolution) override {
    c_.query("UPDATE conflicts SET status = 'resolved', resolution = ?2 WHERE id = ?1")
        .bind(1, id)
        .bind(2, resolution.dump())
        .run();
  }

  std::optional<DeviceRevocation> device_revocation(const std::string& device_id) override {
    return load_device_revocation(c_, device_id);
  }
  void put_device_revocation(const DeviceRevocation& r) override { store_device_revocation(c_, r); }
  bool delete_device_revocation(const std::string& device_id) override {
    return remove_device_revocation(c_, device_id);
  }
  std::int64_t revoke_device_tokens(const std::string& device_id) override {
    return revoke_tokens_of_device(c_, device_id);
  }
  bool device_known(const std::string& device_id) override {
    return is_device_known(c_, device_id);
  }

 private:
  Connection& c_;
  std::atomic<std::int64_t>& commits_;
  std::unique_lock<std::mutex> lock_;
  std::optional<std::int64_t> seq_;               // the last seq handed out, once read
  std::int64_t seq_stored_ = 0;                   // the counter's value in the table
  std::optional<std::int64_t> seq_at_savepoint_;  // seq_ when the job began
};

// ---- the store -------------------------------------------------------------

// WAL checkpoints (copying committed pages from the WAL into the database file).
// SQLite's automatic checkpoint runs inside the commit that takes the WAL past
// 1000 pages, on the writer thread: one request in every few paid for copying the
// others' pages, and an incremental sync of a few hundred edits spent a sixth of
// its writer time there. Here the commit only signals, and a checkpointer thread
// with its own connection copies (PASSIVE: it never waits for, or blocks, the
// writer or the readers). Under a steady push that copy never quite reaches the
// end of the WAL, which can only start over once everything in it is copied;
// past SqliteStoreOptions::wal_writer_pages the writer checkpoints after its
// commit as SQLite would have, which then copies little, and the WAL starts over.

class SqliteStore final : public ServerStore {
 public:
  explicit SqliteStore(SqliteStoreOptions options) : options_(std::move(options)) {}
  ~SqliteStore() override {
    {
      std::lock_guard lock(checkpoint_mutex_);
      checkpoint_stop_ = true;
    }
    checkpoint_cv_.notify_all();
    if (checkpointer_.joinable()) checkpointer_.join();
  }
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  void open() {
    namespace fs = std::filesystem;
    if (!options_.create && !fs::exists(options_.path))
      fail(Errc::not_found,
           options_.path + " does not exist (create it with `fieldsync-server init`)");
    writer_ = Connection::open(options_.path, options_.create, options_.busy_timeout_ms);
    check_format();
    {
      auto q = writer_->query("PRAGMA journal_mode = WAL");
      if (!q.step() || q.text(0) != "wal") fail(Errc::io, options_.path + ": cannot switch to WAL");
    }
    writer_->exec(options_.durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
    writer_->exec("PRAGMA temp_store = MEMORY");
    migrate();
    // Replaces SQLite's automatic checkpoint on this connection (see above the class).
    checkpoint_conn_ = Connection::open(options_.path, false, options_.busy_timeout_ms);
    // A connection opens the WAL with its first read; until then a checkpoint
    // through it finds no WAL and copies nothing.
    checkpoint_conn_->exec("SELECT count(*) FROM sqlite_master");
    sqlite3_wal_hook(writer_->handle(), &SqliteStore::after_wal_commit, this);
    checkpointer_ = std::thread([this] { checkpoint_loop(); });
  }

  Result<std::unique_ptr<WriteTxn>> begin_write() override {
    return guarded([&]() -> Result<std::unique_ptr<WriteTxn>> {
      std::unique_lock lock(write_mutex_);
      return std::unique_ptr<WriteTxn>(new SqliteWriteTxn(*writer_, commits_, std::move(lock)));
    });
  }

  Result<std::int64_t> head_seq() override {
    return read([&](Connection& c) { return load_head(c); });
  }
  Result<std::optional<UserRecord>> user(const std::string& name) override {
    return read([&](Connection& c) { return load_user(c, name); });
  }
  Result<std::optional<TokenRecord>> token(const std::string& hash) override {
    return read([&](Connection& c) -> std::optional<TokenRecord> {
      auto q = c.query(
          "SELECT hash, user, device_id, created_at, expires_at, revoked FROM tokens WHERE hash = "
          "?1");
      q.bind_blob(1, hash);
      if (!q.step()) return std::nullopt;
      return TokenRecord{q.blob(0), q.text(1), q.text(2), q.int64(3), q.int64(4), q.int64(5) != 0};
    });
  }
  Result<ThrottleState> throttle(const std::string& key) override {
    return read([&](Connection& c) { return load_throttle(c, key); });
  }
  Result<std::vector<Form>> latest_forms() override {
    return read([&](Connection& c) {
      std::vector<Form> out;
      auto q = c.query(
          "SELECT f.definition FROM forms f JOIN (SELECT id, max(version) AS v FROM forms GROUP BY "
          "id) m "
          "ON f.id = m.id AND f.version = m.v ORDER BY f.id");
      while (q.step()) out.push_back(parse_stored_form(q.text(0)));
      return out;
    });
  }
  Result<std::optional<Form>> form(const std::string& id,
                                   std::optional<std::int64_t> version) override {
    return read([&](Connection& c) { return load_form(c, id, version); });
  }

  Result<PullPage> pull(const ScopeFilter& filter, std::int64_t since, std::int64_t limit,
                        const PullOmit& omit) override {
    return read([&](Connection& c) {
      PullPage page;
      std::int64_t head = load_head(c);
      std::string sql = "SELECT " + kLogColumns + " FROM log WHERE seq > ?1 AND seq <= ?2";
      ScopeClause clause;
      if (!filter.all) {
        clause = scope_clause(filter.scopes, "scope", 4);
        sql += " AND " + clause.sql;
      }
      sql += " ORDER BY seq LIMIT ?3";
      auto q = c.query(sql);
      // Omitted entries count as returned, so at most that many more rows are read:
      // every row past the last one read would end the page.
      const std::int64_t own_max = omit.own_through > 0 ? PullOmit::kMaxOwnPerPage : 0;
      q.bind(1, since).bind(2, head).bind(
          3, limit + static_cast<std::int64_t>(omit.seqs.size()) + own_max + 1);
      for (std::size_t i = 0; i < clause.params.size(); ++i)
        q.bind(static_cast<int>(4 + i), clause.params[i]);
      std::int64_t last = since;  // the last seq returned or omitted
      std::int64_t own_omitted = 0;
      while (q.step()) {
        if (static_cast<std::int64_t>(page.entries.size()) == limit) {
          page.more = true;
          break;
        }
        const std::int64_t seq = q.int64(0);
        if (own_max > 0 && omit.own(q.text(7))) {  // column 7: origin
          if (own_omitted == own_max) {
            page.more = true;
            break;
          }
          ++own_omitted;
        } else if (!omit.seqs.count(seq)) {
          page.entries.push_back(read_log(q));
        }
        last = seq;
      }
      if (page.more) {
        page.cursor = last;
      } else {
        page.cursor = std::max(head, since);
      }
      return page;
    });
  }

  Result<std::optional<RecordState>> record(const std::string& id) override {
    return read([&](Connection& c) -> std::optional<RecordState> {
      auto row = load_record(c, id);
      if (!row) return std::nullopt;
      return load_record_state(c, std::move(*row));
    });
  }

  Result<RecordsPage> records(const RecordsQuery& query) override {
    return read([&](Connection& c) {
      RecordsPage page;
      std::int64_t head = load_head(c);
      std::string sql =
          "SELECT " + kRecordColumns + " FROM records WHERE version > ?1 AND version <= ?2";
      std::vector<std::string> params;
      int next = 4;
      if (!query.form.empty()) {
        sql += " AND form = ?" + std::to_string(next++);
        params.push_back(query.form);
      }
      if (!query.filter.all) {
        auto clause = scope_clause(query.filter.scopes, "scope", next);
        sql += " AND " + clause.sql;
        next += static_cast<int>(clause.params.size());
        params.insert(params.end(), clause.params.begin(), clause.params.end());
      }
      if (!query.scope_prefix.empty()) {
        auto clause = scope_clause({query.scope_prefix}, "scope", next);
        sql += " AND " + clause.sql;
        next += static_cast<int>(clause.params.size());
        params.insert(params.end(), clause.params.begin(), clause.params.end());
      }
      sql += " ORDER BY version LIMIT ?3";
      std::vector<RecordRow> rows;
      {
        auto q = c.query(sql);
        q.bind(1, query.since).bind(2, head).bind(3, query.limit + 1);
        for (std::size_t i = 0; i < params.size(); ++i) q.bind(static_cast<int>(4 + i), params[i]);
        while (q.step()) {
          if (static_cast<std::int64_t>(rows.size()) == query.limit) {
            page.more = true;
            break;
          }
          rows.push_back(read_record_row(q));
        }
      }
      for (auto& r : rows) page.records.push_back(load_record_state(c, std::move(r)));
      if (page.more) {
        page.cursor = page.records.empty() ? query.since : page.records.back().row.version;
      } else {
        page.cursor = std::max(head, query.since);
      }
      return page;
    });
  }

  Result<std::optional<ConflictRow>> conflict(std::int64_t id) override {
    return read([&](Connection& c) { return load_conflict(c, id); });
  }

  Result<ConflictPage> conflicts(const ConflictQuery& query) override {
    return read([&](Connection& c) {
      std::string sql = "SELECT DISTINCT c.id FROM conflicts c";
      std::vector<std::string> params;
      int next = 3;
      if (!query.record.empty()) {
        sql += " JOIN conflict_records cr ON cr.conflict = c.id AND cr.record = ?" +
               std::to_string(next++);
        params.push_back(query.record);
      }
      sql += " WHERE c.id > ?1";
      for (const auto& [column, value] :
           {std::pair{"c.status", &query.status}, std::pair{"c.kind", &query.kind},
            std::pair{"c.form", &query.form}}) {
        if (value->empty()) continue;
        sql += std::string(" AND ") + column + " = ?" + std::to_string(next++);
        params.push_back(*value);
      }
      if (!query.scope.empty()) {
        auto clause = scope_clause({query.scope}, "c.scope", next);
        sql += " AND " + clause.sql;
        next += static_cast<int>(clause.params.size());
        params.insert(params.end(), clause.params.begin(), clause.params.end());
      }
      sql += " ORDER BY c.id LIMIT ?2";
      std::vector<std::int64_t> ids;
      {
        auto q = c.query(sql);
        q.bind(1, query.after).bind(2, query.limit + 1);
        for (std::size_t i = 0; i < params.size(); ++i) q.bind(static_cast<int>(3 + i), params[i]);
        while (q.step()) ids.push_back(q.int64(0));
      }
      ConflictPage page;
      if (static_cast<std::int64_t>(ids.size()) > query.limit) {
        page.more = true;
        ids.resize(static_cast<std::size_t>(query.limit));
      }
      for (auto id : ids)
        if (auto row = load_conflict(c, id)) page.conflicts.push_back(std::move(*row));
      return page;
    });
  }

  Result<std::vector<QuarantineRow>> quarantine(std::int64_t after, std::int64_t limit) override {
    return read([&](Connection& c) {
      std::vector<QuarantineRow> out;
      auto q = c.query(
          "SELECT id, change_id, device, user, change, code, message, field, received_at FROM "
          "quarantine "
          "WHERE id > ?1 ORDER BY id LIMIT ?2");
      q.bind(1, after).bind(2, limit);
      while (q.step()) {
        QuarantineRow r;
        r.id = q.int64(0);
        r.change_id = q.text(1);
        r.device = q.text(2);
        r.user = q.text(3);
        r.change = q.json_col(4);
        r.reason = RejectReason{q.text(5), q.text(6), q.text(7)};
        r.received_at = q.text(8);
        out.push_back(std::move(r));
      }
      return out;
    });
  }

  Result<QuarantinePage> quarantine(const QuarantineQuery& query) override {
    return read([&](Connection& c) {
      std::string sql =
          "SELECT id, change_id, device, user, change, code, message, field, received_at FROM "
          "quarantine "
          "WHERE id > ?1";
      std::vector<std::string> params;
      if (!query.device.empty()) {
        sql += " AND device = ?" + std::to_string(3 + params.size());
        params.push_back(query.device);
      }
      if (!query.user.empty()) {
        sql += " AND user = ?" + std::to_string(3 + params.size());
        params.push_back(query.user);
      }
      sql += " ORDER BY id LIMIT ?2";
      QuarantinePage page;
      auto q = c.query(sql);
      q.bind(1, query.after).bind(2, query.limit + 1);
      for (std::size_t i = 0; i < params.size(); ++i) q.bind(static_cast<int>(3 + i), params[i]);
      while (q.step()) {
        if (static_cast<std::int64_t>(page.rows.size()) == query.limit) {
          page.more = true;
          break;
        }
        QuarantineRow r;
        r.id = q.int64(0);
        r.change_id = q.text(1);
        r.device = q.text(2);
        r.user = q.text(3);
        r.change = q.json_col(4);
        r.reason = RejectReason{q.text(5), q.text(6), q.text(7)};
        r.received_at = q.text(8);
        page.rows.push_back(std::move(r));
      }
      return page;
    });
  }

  Result<std::vector<DeviceRow>> devices() override {
    return read([&](Connection& c) {
      std::vector<DeviceRow> out;
      auto q = c.query("SELECT " + kDeviceColumns + " FROM devices ORDER BY device_id");
      while (q.step()) out.push_back(read_device(q));
      return out;
    });
  }

  Result<std::optional<LogEntry>> log_entry(std::int64_t seq) override {
    return read([&](Connection& c) -> std::optional<LogEntry> {
      auto q = c.query("SELECT " + kLogColumns + " FROM log WHERE seq = ?1");
      q.bind(1, seq);
      if (!q.step()) return std::nullopt;
      return read_log(q);
    });
  }

  Result<std::optional<ProcessedRow>> processed(const std::string& change_id) override {
    return read([&](Connection& c) { return load_processed(c, change_id); });
  }

  Result<std::optional<DeviceRow>> device(const std::string& device_id) override {
    return read([&](Connection& c) -> std::optional<DeviceRow> {
      auto q = c.query("SELECT " + kDeviceColumns + " FROM devices WHERE device_id = ?1");
      q.bind(1, device_id);
      if (!q.step()) return std::nullopt;
      return read_device(q);
    });
  }

  Result<std::optional<DeviceRevocation>> device_revocation(const std::string& device_id) override {
    return read([&](Connection& c) { return load_device_revocation(c, device_id); });
  }
  Result<std::vector<DeviceRevocation>> device_revocations() override {
    return read([&](Connection& c) { return load_device_revocations(c); });
  }

  Result<StoreStats> stats() override {
    return read([&](Connection& c) {
      StoreStats s;
      s.head_seq = load_head(c);
      auto count = [&](const char* sql) {
        auto q = c.query(sql);
        return q.step() ? q.int64(0) : 0;
      };
      s.log_entries = count("SELECT count(*) FROM log");
      s.records = count("SELECT count(*) FROM records");
      s.open_conflicts = count("SELECT count(*) FROM conflicts WHERE status = 'open'");
      s.quarantined = count("SELECT count(*) FROM quarantine");
      s.write_transactions = commits_.load();
      s.wal_checkpoints_background = checkpoints_background_.load();
      s.wal_checkpoints_by_writer = checkpoints_by_writer_.load();
      return s;
    });
  }

  Result<void> check() override {
    auto head = read([&](Connection& c) { return load_head(c); });
    if (!head) return head.error();
    return {};
  }

 private:
  // Refuses files that are SQLite but not a fieldsync server store, and newer schemas.
  void check_format() {
    std::int64_t user_version = 0;
    {
      auto q = writer_->query("PRAGMA user_version");
      if (q.step()) user_version = q.int64(0);
    }
    bool has_meta = false;
    std::int64_t tables = 0;
    {
      auto q = writer_->query("SELECT name FROM sqlite_master WHERE type = 'table'");
      while (q.step()) {
        ++tables;
        if (q.text(0) == "meta") has_meta = true;
      }
    }
    if (tables == 0) return;
    std::string marker;
    if (has_meta) {
      auto q = writer_->query("SELECT value FROM meta WHERE key = 'format'");
      if (q.step()) marker = q.text(0);
    }
    if (marker != kFormatMarker)
      fail(Errc::corrupt, options_.path + " is not a fieldsync server store");
    if (user_version > kServerSchemaVersion)
      fail(Errc::schema_too_new, options_.path +
                                     " was written by a newer fieldsync-server (schema " +
                                     std::to_string(user_version) + ")");
  }

  void migrate() {
    writer_->exec("BEGIN IMMEDIATE");
    try {
      std::int64_t from = 0;
      {
        auto q = writer_->query("PRAGMA user_version");
        if (q.step()) from = q.int64(0);
      }
      for (const auto& step : kMigrations) {
        if (step.version <= from || step.version > options_.schema_version) continue;
        writer_->exec(step.sql);
        writer_->exec("PRAGMA user_version = " + std::to_string(step.version));
      }
      if (from == 0)
        writer_->query("INSERT INTO meta(key, value) VALUES('format', ?1)")
            .bind(1, kFormatMarker)
            .run();
      writer_->exec("COMMIT");
    } catch (...) {
      writer_->exec_noexcept("ROLLBACK");
      throw;
    }
  }

  // Runs `body` on a read connection inside one read transaction (one snapshot).
  template <class F>
  auto read(F&& body) -> Result<std::invoke_result_t<F, Connection&>> {
    using T = std::invoke_result_t<F, Connection&>;
    return guarded([&]() -> Result<T> {
      Lease lease(*this);
      Connection& c = *lease.conn;
      c.exec("BEGIN");
      try {
        T value = body(c);
        c.exec("COMMIT");
        return value;
      } catch (...) {
        c.exec_noexcept("ROLLBACK");
        throw;
      }
    });
  }

  // A read connection borrowed from the pool for one read.
  struct Lease {
    explicit Lease(SqliteStore& s) : store(s) {
      std::unique_lock lock(store.pool_mutex_);
      store.pool_cv_.wait(lock, [&] {
        return !store.idle_.empty() ||
               store.readers_open_ < std::max(1, store.options_.max_readers);
      });
      if (!store.idle_.empty()) {
        conn = std::move(store.idle_.back());
        store.idle_.pop_back();
        return;
      }
      ++store.readers_open_;
      lock.unlock();
      try {
        conn = Connection::open(store.options_.path, false, store.options_.busy_timeout_ms);
        conn->exec("PRAGMA query_only = 1");
      } catch (...) {
        std::lock_guard relock(store.pool_mutex_);
        --store.readers_open_;
        store.pool_cv_.notify_one();
        throw;
      }
    }
    ~Lease() {
      std::lock_guard lock(store.pool_mutex_);
      if (conn) store.idle_.push_back(std::move(conn));
      store.pool_cv_.notify_one();
    }
    SqliteStore& store;
    std::unique_ptr<Connection> conn;
  };

  // Called by SQLite on the writer thread after each commit, with the WAL's size.
  static int after_wal_commit(void* self, sqlite3* db, const char* schema, int pages) {
    auto* store = static_cast<SqliteStore*>(self);
    if (pages >= store->options_.wal_writer_pages) {
      // PASSIVE does not wait; a checkpoint the other thread is running makes it
      // return SQLITE_BUSY at once, and the next commit tries again.
      if (sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr) ==
          SQLITE_OK)
        ++store->checkpoints_by_writer_;
    } else if (pages >= store->options_.wal_background_pages) {
      {
        std::lock_guard lock(store->checkpoint_mutex_);
        store->checkpoint_wanted_ = true;
      }
      store->checkpoint_cv_.notify_one();
    }
    return SQLITE_OK;
  }

  void checkpoint_loop() {
    std::unique_lock lock(checkpoint_mutex_);
    for (;;) {
      checkpoint_cv_.wait(lock, [&] { return checkpoint_wanted_ || checkpoint_stop_; });
      if (checkpoint_stop_) return;
      checkpoint_wanted_ = false;
      lock.unlock();
      // A failure (busy, I/O) leaves the pages in the WAL, where they are safe; the
      // next request or the writer's own checkpoint copies them.
      if (sqlite3_wal_checkpoint_v2(checkpoint_conn_->handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                    nullptr, nullptr) == SQLITE_OK)
        ++checkpoints_background_;
      lock.lock();
    }
  }

  SqliteStoreOptions options_;
  std::unique_ptr<Connection> writer_;
  std::unique_ptr<Connection> checkpoint_conn_;  // used by checkpointer_ only
  std::thread checkpointer_;
  std::mutex checkpoint_mutex_;
  std::condition_variable checkpoint_cv_;
  bool checkpoint_wanted_ = false;
  bool checkpoint_stop_ = false;
  std::atomic<std::int64_t> checkpoints_background_{0};
  std::atomic<std::int64_t> checkpoints_by_writer_{0};
  std::mutex write_mutex_;  // one write transaction at a time
  std::atomic<std::int64_t> commits_{0};
  std::mutex pool_mutex_;
  std::condition_variable pool_cv_;
  std::vector<std::unique_ptr<Connection>> idle_;
  int readers_open_ = 0;
};

}  // namespace

Result<std::unique_ptr<ServerStore>> open_sqlite_store(const SqliteStoreOptions& options) {
  return guarded([&]() -> Result<std::unique_ptr<ServerStore>> {
    auto store = std::make_unique<SqliteStore>(options);
    store->open();
    return std::unique_ptr<ServerStore>(std::move(store));
  });
}

}  // namespace fieldsync::server
