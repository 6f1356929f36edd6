// The device store (store.hpp): records, the outbox and the sync bookkeeping in one
// SQLite file. The file layout is described in docs/storage.md; keep them in step.
//
// Failures inside this file are thrown as detail::Failure where they are found and
// become Result values in `guarded()` at every public entry point; every write runs
// in one transaction (`Impl::write`) that rolls back on any failure.
#include "fieldsync/store.hpp"

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>

#include "fieldsync/ids.hpp"
#include "sqlite_db.hpp"
#include "synced_text.hpp"

namespace fieldsync {

using detail::Db;
using detail::fail;
using detail::Failure;
using detail::Query;

namespace {

constexpr std::string_view kFormatMarker = "fieldsync-device-store";
constexpr std::int64_t kReceiptsKept = 10000;
constexpr int kBusyTimeoutMs = 5000;

// Ordered schema steps. Step N takes a file from user_version N-1 to N; each runs
// in the one migration transaction with the user_version update. Never edit a
// released step: append a new one and raise Store::kSchemaVersion.
struct Migration {
  int version;
  const char* sql;
};
constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE forms(
  id TEXT NOT NULL, version INTEGER NOT NULL, definition TEXT NOT NULL,
  PRIMARY KEY(id, version)) WITHOUT ROWID;
CREATE TABLE records(
  id TEXT PRIMARY KEY,
  form TEXT NOT NULL,
  form_version INTEGER NOT NULL,
  scope TEXT NOT NULL,
  version INTEGER NOT NULL DEFAULT 0,
  server_deleted INTEGER NOT NULL DEFAULT 0,
  tomb_seq INTEGER NOT NULL DEFAULT 0,
  local_deleted INTEGER NOT NULL DEFAULT 0,
  synced TEXT NOT NULL DEFAULT '{}');
CREATE TABLE outbox(
  counter INTEGER PRIMARY KEY,
  change_id TEXT NOT NULL,
  record TEXT NOT NULL REFERENCES records(id),
  op TEXT NOT NULL,
  form TEXT NOT NULL,
  form_version INTEGER,
  scope TEXT NOT NULL,
  fields TEXT NOT NULL,
  base TEXT NOT NULL,
  hlc TEXT NOT NULL,
  attempted INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL);
CREATE INDEX outbox_by_record ON outbox(record, counter);
CREATE TABLE reviews(
  record TEXT NOT NULL REFERENCES records(id) ON DELETE CASCADE,
  field TEXT NOT NULL,
  conflict INTEGER NOT NULL,
  my_value TEXT,
  PRIMARY KEY(record, field, conflict)) WITHOUT ROWID;
CREATE TABLE rejected(
  change_id TEXT PRIMARY KEY,
  counter INTEGER NOT NULL,
  record TEXT NOT NULL,
  change TEXT NOT NULL,
  code TEXT NOT NULL,
  message TEXT NOT NULL,
  field TEXT NOT NULL,
  rejected_at TEXT NOT NULL);
CREATE TABLE receipts(
  seqno INTEGER PRIMARY KEY,
  change_id TEXT NOT NULL UNIQUE,
  record TEXT NOT NULL,
  status TEXT NOT NULL,
  seq INTEGER NOT NULL,
  received_at TEXT NOT NULL);
)sql"},
    // Changes sent before this step went out with a 0 base for every field; one
    // resent after it goes out the same way (read_outbox), since a server before
    // session 4 tells a replay by its text and would refuse it as id_reused.
    {2, R"sql(
INSERT OR REPLACE INTO meta(key, value)
  SELECT 'zero_bases_through', CAST(coalesce(max(counter), 0) AS TEXT) FROM outbox
  WHERE attempted = 1;
)sql"},
    // records.synced may now be written in the compact form (synced_text.hpp),
    // which a schema-2 build would misread: the step itself changes no row.
    {3, R"sql(
SELECT 1;
)sql"},
    // The cursor moves over entries of this device's own changes found here (the
    // receipts) right above it: apply_sync looks them up by seq.
    {4, R"sql(
CREATE INDEX IF NOT EXISTS receipts_by_seq ON receipts(seq);
)sql"},
};
static_assert(std::size(kMigrations) == Store::kSchemaVersion,
              "one migration step per schema version");

// What the officer should do with a store that cannot be opened: save what can be
// read (salvage.hpp) before anything else happens to the file.
std::string salvage_hint(const std::string& path, bool maybe_other_file) {
  return std::string(". Nothing in the file was changed. ") +
         (maybe_other_file ? "If it was a fieldsync store, its header is damaged: " : "") +
         "keep the file, do not reinstall or delete the app's data, and export every change "
         "that can still be read with `fieldsync-cli salvage --db " +
         path +
         " --out salvage.json` (in an app: fieldsync_store_salvage of the C ABI, "
         "fieldsync::salvage_store): it lists the unsynced changes and what could not be read";
}

template <class F>
auto guarded(F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Failure& f) {
    return f.error;
  } catch (const json::exception& e) {
    return Error(Errc::internal, std::string("json: ") + e.what());
  } catch (const std::bad_alloc&) {
    return Error(Errc::io, "out of memory");
  } catch (const std::exception& e) {
    return Error(Errc::internal, e.what());
  }
}

template <class T>
T take(Result<T> r) {
  if (!r) throw Failure{std::move(r).error()};
  return std::move(r).value();
}

void check(const Result<void>& r) {
  if (!r) throw Failure{r.error()};
}

json parse_stored(std::string_view text, const char* what) {
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) fail(Errc::corrupt, std::string("stored ") + what + " is not valid JSON");
  return j;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Base versions are stored and sent without their zero entries (protocol.md: "0
// or absent: never seen"), which keeps a new record's change small: about half of
// its text was zeros. Only base[""] is always there, since a delete must carry it.
// The server's replay identity reads a zero and an absent base alike, so a change
// first sent by an app that wrote every zero is still the same change resent.
std::string compact_base(const VersionMap& base) {
  json j = json::object();
  for (const auto& [k, v] : base)
    if (v != 0) j[k] = v;
  return dump_text(j);
}

VersionMap read_base(const json& stored) {
  VersionMap base;
  for (const auto& [k, v] : stored.items()) base[k] = v.get<std::int64_t>();
  base.try_emplace("", 0);
  return base;
}

std::int64_t base_of(const VersionMap& base, const std::string& key) {
  auto it = base.find(key);
  return it == base.end() ? 0 : it->second;
}

// One row of `records`. `synced` holds the server's state as last seen:
// field -> [value, version].
struct RecordRow {
  std::string id;
  std::string form;
  std::int64_t form_version = 0;
  std::string scope;
  std::int64_t version = 0;
  bool server_deleted = false;
  std::int64_t tomb_seq = 0;  // seq of the delete/revive that set server_deleted
  bool local_deleted = false;
  json synced = json::object();

  bool visible_deleted() const { return local_deleted || server_deleted; }
  std::int64_t synced_version(const std::string& field) const {
    auto it = synced.find(field);
    return it == synced.end() ? 0 : (*it)[1].get<std::int64_t>();
  }
};

RecordRow read_record(const Query& q) {
  RecordRow r;
  r.id = q.text(0);
  r.form = q.text(1);
  r.form_version = q.int64(2);
  r.scope = q.text(3);
  r.version = q.int64(4);
  r.server_deleted = q.int64(5) != 0;
  r.tomb_seq = q.int64(6);
  r.local_deleted = q.int64(7) != 0;
  r.synced = parse_stored(q.text_view(8), "record values");
  if (!detail::expand_synced(r.synced))
    fail(Errc::corrupt, "stored record values have a version that is not a whole number >= 1");
  return r;
}

// What compact_base writes for a change that saw nothing of its record.
constexpr std::string_view kNewRecordBase = "{}";

// `zero_bases_through`: the last counter sent before schema 2 (see its step).
// `parse_fields` false leaves an upsert's fields null, for a caller that reads
// them from the text (OutboxBatch).
OutboxEntry read_outbox(const Query& q, std::int64_t zero_bases_through, bool parse_fields = true) {
  OutboxEntry e;
  e.counter = q.int64(0);
  Change& c = e.change;
  c.id = q.text(1);
  c.record = q.text(2);
  c.op = q.text(3);
  c.form = q.text(4);
  if (!q.is_null(5)) c.form_version = q.int64(5);
  c.scope = q.text(6);
  e.attempted = q.int64(10) != 0;
  const bool old_bases = e.attempted && e.counter <= zero_bases_through;
  if (parse_fields || c.op != "upsert" || old_bases)
    c.fields = parse_stored(q.text_view(7), "change fields");
  else
    c.fields = nullptr;
  if (q.text_view(8) == kNewRecordBase)
    c.base = VersionMap{{"", 0}};
  else
    c.base = read_base(parse_stored(q.text_view(8), "change base"));
  c.hlc = q.text(9);
  e.created_at = q.text(11);
  if (old_bases)
    for (const auto& [name, value] : c.fields.items()) c.base.try_emplace(name, 0);
  return e;
}

// Review marks of one record: field ("" = the record) -> (conflict id, my_value).
struct ReviewMark {
  std::int64_t conflict = 0;
  std::optional<json> my_value;
};
using ReviewMarks = std::map<std::string, ReviewMark>;

}  // namespace

struct Store::Impl {
  std::unique_ptr<Db> db;
  std::string path;
  std::string device_id;
  std::int64_t zero_bases_through = 0;  // meta, see read_outbox
  HlcClock::WallClock wall;
  HlcClock clock;

  // State valid inside a write transaction (reloaded when another connection wrote).
  std::int64_t data_version = -1;
  std::int64_t next_counter = 1;
  bool counter_used = false;
  bool hlc_used = false;
  bool relaxed_sync = false;  // the connection is at synchronous=NORMAL (see write())

  // Parsed forms, so a save does not re-parse its form. Dropped whenever another
  // connection wrote to the file or a transaction rolled back.
  std::map<std::pair<std::string, std::int64_t>, std::shared_ptr<const Form>> form_cache;
  std::map<std::string, std::int64_t> latest_form;

  // Inside apply_sync: the records its results wrote (but a first create, which
  // is written as text), so that the log entries of the same response (mostly
  // this device's own changes coming back) are applied without reading them
  // again, and not written when they change nothing.
  std::unordered_map<std::string, RecordRow> applied_records;

  // WAL checkpoints (copying committed pages from the WAL into the database
  // file). SQLite's automatic one runs inside the commit that takes the WAL past
  // 1000 pages: a sync paid for copying the pages of the saves before it, up to a
  // third of a small sync's time. Here the commit only signals, and a thread with
  // its own connection copies (PASSIVE: it never waits for or blocks this one).
  // Past kWalWriterPages (a checkpoint that cannot keep up, or never reaches the
  // WAL's end under steady writes) the committing thread checkpoints as SQLite
  // would have, which lets the WAL start over.
  static constexpr int kWalBackgroundPages = 1000;
  static constexpr int kWalWriterPages = 4000;
  std::unique_ptr<Db> checkpoint_db;  // used by `checkpointer` only
  std::thread checkpointer;
  std::mutex checkpoint_mutex;
  std::condition_variable checkpoint_cv;
  bool checkpoint_wanted = false;
  bool checkpoint_stop = false;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    if (!checkpointer.joinable()) return;
    sqlite3_wal_hook(db->handle(), nullptr, nullptr);
    {
      std::lock_guard lock(checkpoint_mutex);
      checkpoint_stop = true;
    }
    checkpoint_cv.notify_all();
    checkpointer.join();
  }

  void start_checkpointer() {
    checkpoint_db = Db::open(path, /*create=*/false);
    sqlite3_busy_timeout(checkpoint_db->handle(), kBusyTimeoutMs);
    // A connection opens the WAL with its first read; until then a checkpoint
    // through it finds no WAL and copies nothing.
    checkpoint_db->exec("SELECT count(*) FROM sqlite_master");
    try {
      checkpointer = std::thread([this] { checkpoint_loop(); });
    } catch (const std::system_error&) {
      return;  // no thread to be had: SQLite's automatic checkpoint stays
    }
    sqlite3_wal_hook(db->handle(), &Impl::after_wal_commit, this);  // replaces the automatic one
  }

  // Called by SQLite after each commit of `db`, with the WAL's size in pages.
  static int after_wal_commit(void* self, sqlite3* handle, const char* schema, int pages) {
    auto* impl = static_cast<Impl*>(self);
    if (pages >= kWalWriterPages) {
      // Returns SQLITE_BUSY at once while the other thread checkpoints; the next
      // commit tries again.
      (void)sqlite3_wal_checkpoint_v2(handle, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    } else if (pages >= kWalBackgroundPages) {
      {
        std::lock_guard lock(impl->checkpoint_mutex);
        impl->checkpoint_wanted = true;
      }
      impl->checkpoint_cv.notify_one();
    }
    return SQLITE_OK;
  }

  void checkpoint_loop() {
    std::unique_lock lock(checkpoint_mutex);
    for (;;) {
      checkpoint_cv.wait(lock, [&] { return checkpoint_wanted || checkpoint_stop; });
      if (checkpoint_stop) return;
      checkpoint_wanted = false;
      lock.unlock();
      // A failure (busy, I/O) leaves the pages in the WAL, where they are safe;
      // a later commit asks again.
      (void)sqlite3_wal_checkpoint_v2(checkpoint_db->handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                      nullptr, nullptr);
      lock.lock();
    }
  }

  std::int64_t now_ms() const { return wall(); }
  std::string now_text() const { return format_rfc3339_ms(now_ms()); }

  // ---- opening -------------------------------------------------------------

  std::int64_t pragma_int(const char* sql) {
    auto q = db->query(sql);
    return q.step() ? q.int64(0) : 0;
  }

  void open_checked() {
    std::int64_t user_version = 0;
    try {
      user_version = pragma_int("PRAGMA user_version");
    } catch (const Failure& f) {
      if (f.error.code == Errc::corrupt)
        fail(Errc::corrupt,
             path + " is not a fieldsync store: not a SQLite database" + salvage_hint(path, true));
      throw;
    }
    std::int64_t tables = 0;
    bool has_meta = false;
    {
      auto q = db->query("SELECT name FROM sqlite_master WHERE type = 'table'");
      while (q.step()) {
        ++tables;
        if (q.text_view(0) == "meta") has_meta = true;
      }
    }
    if (tables > 0 && !has_meta)
      fail(Errc::corrupt,
           path + " is not a fieldsync store: it holds other tables and no meta table");
    if (has_meta) {
      std::string marker;
      {
        auto q = db->query("SELECT value FROM meta WHERE key = 'format'");
        if (q.step()) marker = q.text(0);
      }
      if (marker != kFormatMarker)
        fail(Errc::corrupt,
             path + " is not a fieldsync store: its meta table has no fieldsync marker");
      if (user_version > Store::kSchemaVersion)
        fail(Errc::schema_too_new, path + " was written by a newer fieldsync (schema " +
                                       std::to_string(user_version) + "; this build reads up to " +
                                       std::to_string(Store::kSchemaVersion) + ")");
      if (user_version < 1) fail(Errc::corrupt, path + " has a meta table but no schema version");
    } else if (user_version != 0) {
      fail(Errc::corrupt, path + " is not a fieldsync store: unknown schema version " +
                              std::to_string(user_version));
    }
    if (tables > 0) {
      auto q = db->query("PRAGMA quick_check");
      std::string report;
      while (q.step()) {
        if (!report.empty()) report += "; ";
        report += q.text(0);
        if (report.size() > 400) break;
      }
      if (report != "ok")
        fail(Errc::corrupt,
             path + " is damaged" + salvage_hint(path, false) + ". SQLite reports: " + report);
    }
    {
      auto q = db->query("PRAGMA journal_mode = WAL");
      if (!q.step() || lower(q.text(0)) != "wal")
        fail(Errc::io, path + ": cannot switch the journal to WAL");
    }
    db->exec("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;");
    migrate();

    auto id = meta("device_id");
    if (!id || !is_valid_device_id(*id)) fail(Errc::corrupt, path + " has no valid device id");
    device_id = *id;
    zero_bases_through = meta_int("zero_bases_through");
    auto hlc_text = meta("hlc");
    Hlc last{};
    if (hlc_text && !hlc_text->empty()) last = take(Hlc::parse(*hlc_text));
    clock = HlcClock(wall, last);
    start_checkpointer();
  }

  void migrate() {
    db->exec("BEGIN IMMEDIATE");
    try {
      // Read again under the write lock: another process may have just migrated.
      std::int64_t from = pragma_int("PRAGMA user_version");
      for (const auto& step : kMigrations) {
        if (step.version <= from) continue;
        db->exec(step.sql);
        db->exec(("PRAGMA user_version = " + std::to_string(step.version)).c_str());
      }
      if (from == 0) {
        set_meta("format", std::string(kFormatMarker));
        set_meta("device_id", new_uuid_v4());
        set_meta("created_at", now_text());
        set_meta("next_counter", "1");
        set_meta("cursor", "0");
        set_meta("hlc", "");
      }
      db->exec("COMMIT");
    } catch (...) {
      db->exec_noexcept("ROLLBACK");
      db->clear_cache();
      throw;
    }
    db->clear_cache();
  }

  // ---- meta and transactions ------------------------------------------------

  std::optional<std::string> meta(std::string_view key) {
    auto q = db->query("SELECT value FROM meta WHERE key = ?1");
    q.bind(1, key);
    if (!q.step()) return std::nullopt;
    return q.text(0);
  }

  void set_meta(std::string_view key, const std::string& value) {
    db->query(
          "INSERT INTO meta(key, value) VALUES(?1, ?2) "
          "ON CONFLICT(key) DO UPDATE SET value = excluded.value")
        .bind(1, key)
        .bind(2, value)
        .run();
  }

  std::int64_t meta_int(std::string_view key) {
    auto v = meta(key);
    if (!v) return 0;
    try {
      return std::stoll(*v);
    } catch (const std::exception&) {
      fail(Errc::corrupt, "meta " + std::string(key) + " is not a number");
    }
  }

  // Picks up what other connections committed since this one last looked.
  void refresh() {
    std::int64_t v = pragma_int("PRAGMA data_version");
    if (v == data_version) return;
    data_version = v;
    form_cache.clear();
    latest_form.clear();
    next_counter = std::max<std::int64_t>(1, meta_int("next_counter"));
    auto hlc_text = meta("hlc");
    if (hlc_text && !hlc_text->empty()) {
      auto stored = take(Hlc::parse(*hlc_text));
      if (stored > clock.last()) clock = HlcClock(wall, stored);
    }
  }

  void forget_state() {
    counter_used = false;
    hlc_used = false;
    data_version = -1;
    form_cache.clear();
    latest_form.clear();
  }

  // How a write's commit reaches the disk. `full` (every save) fsyncs the WAL
  // before the commit returns. `relaxed` leaves that to the next full commit or
  // checkpoint: only for what a later sync does again by itself - applying a
  // round trip's answer (docs/storage.md, "Connection settings").
  enum class Commit { full, relaxed };

  // Runs `body` in one IMMEDIATE transaction; commits what it did, or rolls back
  // everything when it throws.
  template <class F>
  auto write(F&& body, Commit commit = Commit::full) -> decltype(body()) {
    // The safety level can only change outside a transaction. A relaxed write
    // puts it back on its way out; a full write that finds it relaxed (that put
    // back failed) sets it before it begins, or does not begin.
    if (commit == Commit::relaxed || relaxed_sync) {
      db->exec(commit == Commit::relaxed ? "PRAGMA synchronous = NORMAL"
                                         : "PRAGMA synchronous = FULL");
      relaxed_sync = commit == Commit::relaxed;
    }
    struct Restore {
      Impl& impl;
      bool on;
      ~Restore() {
        if (on && impl.db->exec_noexcept("PRAGMA synchronous = FULL") == SQLITE_OK)
          impl.relaxed_sync = false;
      }
    } restore{*this, commit == Commit::relaxed};
    db->exec("BEGIN IMMEDIATE");
    try {
      refresh();
      if constexpr (std::is_void_v<decltype(body())>) {
        body();
        finish_write();
      } else {
        auto result = body();
        finish_write();
        return result;
      }
    } catch (...) {
      db->exec_noexcept("ROLLBACK");
      forget_state();
      throw;
    }
  }

  void finish_write() {
    if (counter_used) set_meta("next_counter", std::to_string(next_counter));
    if (hlc_used) set_meta("hlc", clock.last().to_string());
    db->exec("COMMIT");
    counter_used = false;
    hlc_used = false;
  }

  // A read transaction: one consistent snapshot for the whole of `body`.
  template <class F>
  auto read(F&& body) -> decltype(body()) {
    db->exec("BEGIN");
    try {
      refresh();
      auto result = body();
      db->exec("COMMIT");
      return result;
    } catch (...) {
      db->exec_noexcept("ROLLBACK");
      forget_state();
      throw;
    }
  }

  // ---- forms ----------------------------------------------------------------

  std::shared_ptr<const Form> form_for(const std::string& id, std::optional<std::int64_t> version) {
    std::int64_t v = 0;
    if (version) {
      v = *version;
    } else if (auto it = latest_form.find(id); it != latest_form.end()) {
      v = it->second;
    } else {
      auto q = db->query("SELECT max(version) FROM forms WHERE id = ?1");
      q.bind(1, id);
      if (!q.step() || q.is_null(0))
        fail(Errc::unknown_form, "form " + id + " is not imported", "form");
      v = q.int64(0);
      latest_form[id] = v;
    }
    auto key = std::make_pair(id, v);
    if (auto it = form_cache.find(key); it != form_cache.end()) return it->second;
    std::string text;
    {
      auto q = db->query("SELECT definition FROM forms WHERE id = ?1 AND version = ?2");
      q.bind(1, id).bind(2, v);
      if (!q.step())
        fail(Errc::unknown_form,
             "form " + id + " version " + std::to_string(v) + " is not imported", "form_version");
      text = q.text(0);
    }
    auto parsed = Form::parse_text(text);
    if (!parsed)
      fail(Errc::corrupt, "stored form " + id + " cannot be read: " + parsed.error().to_string());
    auto form = std::make_shared<const Form>(std::move(parsed).value());
    form_cache.emplace(key, form);
    return form;
  }

  // ---- records and the outbox -----------------------------------------------

  std::optional<RecordRow> load_record(const std::string& id) {
    auto q = db->query(
        "SELECT id, form, form_version, scope, version, server_deleted, tomb_seq, local_deleted, "
        "synced FROM records WHERE id = ?1");
    q.bind(1, id);
    if (!q.step()) return std::nullopt;
    return read_record(q);
  }

  void insert_record(const RecordRow& r) { insert_record(r, dump_text(r.synced)); }

  // `synced_text`: r.synced as stored (either form, synced_text.hpp).
  void insert_record(const RecordRow& r, const std::string& synced_text) {
    db->query(
          "INSERT INTO records(id, form, form_version, scope, version, server_deleted, tomb_seq, "
          "local_deleted, synced) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
        .bind(1, r.id)
        .bind(2, r.form)
        .bind(3, r.form_version)
        .bind(4, r.scope)
        .bind(5, r.version)
        .bind(6, r.server_deleted)
        .bind(7, r.tomb_seq)
        .bind(8, r.local_deleted)
        .bind(9, synced_text)
        .run();
  }

  void update_record(const RecordRow& r) { update_record(r, dump_text(r.synced)); }

  // `synced_text`: r.synced as JSON text.
  void update_record(const RecordRow& r, const std::string& synced_text) {
    db->query(
          "UPDATE records SET form_version = ?2, version = ?3, server_deleted = ?4, tomb_seq = ?5, "
          "local_deleted = ?6, synced = ?7 WHERE id = ?1")
        .bind(1, r.id)
        .bind(2, r.form_version)
        .bind(3, r.version)
        .bind(4, r.server_deleted)
        .bind(5, r.tomb_seq)
        .bind(6, r.local_deleted)
        .bind(7, synced_text)
        .run();
  }

  // The outbox changes of one record after `after`, oldest first.
  std::vector<OutboxEntry> pending(const std::string& record, std::int64_t after = 0) {
    std::vector<OutboxEntry> out;
    auto q = db->query(
        "SELECT counter, change_id, record, op, form, form_version, scope, fields, base, hlc, "
        "attempted, created_at FROM outbox WHERE record = ?1 AND counter > ?2 ORDER BY counter");
    q.bind(1, record).bind(2, after);
    while (q.step()) out.push_back(read_outbox(q, zero_bases_through));
    return out;
  }

  std::optional<OutboxEntry> outbox_entry(std::int64_t counter) {
    auto q = db->query(
        "SELECT counter, change_id, record, op, form, form_version, scope, fields, base, hlc, "
        "attempted, created_at FROM outbox WHERE counter = ?1");
    q.bind(1, counter);
    if (!q.step()) return std::nullopt;
    return read_outbox(q, zero_bases_through);
  }

  void insert_change(const OutboxEntry& e) {
    insert_change(e, dump_text(e.change.fields), compact_base(e.change.base));
  }

  // The hot path of a save: the field and base texts are written as given, so a
  // new record's values are serialised once and never copied into a Change.
  void insert_change(const OutboxEntry& e, const std::string& fields_text,
                     const std::string& base_text) {
    const Change& c = e.change;
    db->query(
          "INSERT INTO outbox(counter, change_id, record, op, form, form_version, scope, fields, "
          "base, hlc, attempted, created_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
          "?12)")
        .bind(1, e.counter)
        .bind(2, c.id)
        .bind(3, c.record)
        .bind(4, c.op)
        .bind(5, c.form)
        .bind(6, c.form_version)
        .bind(7, c.scope)
        .bind(8, fields_text)
        .bind(9, base_text)
        .bind(10, c.hlc)
        .bind(11, e.attempted)
        .bind(12, e.created_at)
        .run();
  }

  // Only changes never sent are ever rewritten (coalescing, rebase): a change that
  // was attempted is resent with exactly the same content.
  void update_change(const OutboxEntry& e) {
    assert(!e.attempted);
    db->query(
          "UPDATE outbox SET fields = ?2, base = ?3, hlc = ?4, form_version = ?5 WHERE counter = "
          "?1")
        .bind(1, e.counter)
        .bind(2, dump_text(e.change.fields))
        .bind(3, compact_base(e.change.base))
        .bind(4, e.change.hlc)
        .bind(5, e.change.form_version)
        .run();
  }

  void delete_change(std::int64_t counter) {
    db->query("DELETE FROM outbox WHERE counter = ?1").bind(1, counter).run();
  }

  OutboxEntry new_change(const RecordRow& row, std::string op) {
    OutboxEntry e;
    e.counter = next_counter++;
    counter_used = true;
    e.created_at = now_text();
    Change& c = e.change;
    c.id = ChangeId{device_id, e.counter}.to_string();
    c.record = row.id;
    c.form = row.form;
    c.form_version = row.form_version;
    c.scope = row.scope;
    c.op = std::move(op);
    c.hlc = next_hlc();
    return e;
  }

  std::string next_hlc() {
    hlc_used = true;
    return clock.now().to_string();
  }

  // ---- review marks -----------------------------------------------------------

  // Marks (record, field) under review by `conflict`; field "" is the record. One
  // mark per conflict, so marks of different conflicts never overwrite each other.
  // A mark without my_value keeps the value an earlier mark of the conflict had.
  void set_review(const std::string& record, const std::string& field, std::int64_t conflict,
                  const std::optional<json>& my_value) {
    auto q = db->query(
        "INSERT INTO reviews(record, field, conflict, my_value) VALUES(?1, ?2, ?3, ?4) "
        "ON CONFLICT(record, field, conflict) DO UPDATE SET "
        "my_value = coalesce(excluded.my_value, reviews.my_value)");
    q.bind(1, record).bind(2, field).bind(3, conflict);
    if (my_value)
      q.bind(4, my_value->dump());
    else
      q.bind_null(4);
    q.run();
  }

  void clear_reviews(const std::string& record, std::int64_t conflict) {
    db->query("DELETE FROM reviews WHERE record = ?1 AND conflict = ?2")
        .bind(1, record)
        .bind(2, conflict)
        .run();
  }

  ReviewMarks reviews(const std::string& record) {
    ReviewMarks marks;
    auto q = db->query(
        "SELECT field, conflict, my_value FROM reviews WHERE record = ?1 ORDER BY field, conflict");
    q.bind(1, record);
    while (q.step()) {
      ReviewMark m;
      m.conflict = q.int64(1);
      if (!q.is_null(2)) m.my_value = parse_stored(q.text_view(2), "review value");
      marks[q.text(0)] = std::move(m);
    }
    return marks;
  }

  // ---- saving -----------------------------------------------------------------

  std::string put_locked(const PutRequest& req) {
    if (!req.fields.is_object())
      fail(Errc::invalid_argument, "fields must be a JSON object of field values", "fields");
    std::string id = req.record.empty() ? new_uuid_v7(now_ms()) : lower(req.record);
    if (!is_uuid(id)) fail(Errc::invalid_argument, "record id must be a UUID", "record");

    std::optional<RecordRow> existing;
    if (!req.record.empty()) existing = load_record(id);
    const bool creating = !existing;
    RecordRow row;
    std::shared_ptr<const Form> form;
    std::vector<OutboxEntry> pend;
    if (creating) {
      if (req.form.empty()) fail(Errc::validation, "a new record needs a form", "form");
      if (!is_valid_region_code(req.scope))
        fail(Errc::validation, "scope must be a region code like 14.03.01.2001", "scope");
      form = form_for(req.form, req.form_version);
      row.id = id;
      row.form = form->id;
      row.form_version = form->version;
      row.scope = req.scope;
    } else {
      row = std::move(*existing);
      if (!req.form.empty() && req.form != row.form)
        fail(Errc::validation,
             "record " + id + " belongs to form " + row.form + "; its form cannot change", "form");
      if (!req.scope.empty() && req.scope != row.scope)
        fail(Errc::validation,
             "record " + id + " belongs to scope " + row.scope + "; its scope cannot change",
             "scope");
      if (row.visible_deleted()) fail(Errc::deleted, "record " + id + " is deleted");
      form = form_for(row.form, req.form_version.value_or(row.form_version));
      pend = pending(id);
    }
    check(form->validate_fields(req.fields, creating));
    if (!creating && req.fields.empty()) return id;

    // The base of a field is the server version the officer's value builds on: the
    // synced version, or - when an unsynced edit of the field is pending - the base
    // of that edit (the officer has not seen anything newer).
    auto base_for = [&](const std::string& field) -> std::int64_t {
      for (auto it = pend.rbegin(); it != pend.rend(); ++it)
        if (it->change.op == "upsert" && it->change.fields.contains(field))
          return base_of(it->change.base, field);
      return row.synced_version(field);
    };

    OutboxEntry* last = pend.empty() ? nullptr : &pend.back();
    if (last && last->change.op == "upsert" && !last->attempted) {
      Change& c = last->change;
      for (const auto& [name, value] : req.fields.items()) {
        if (!c.fields.contains(name)) c.base[name] = base_for(name);
        c.fields[name] = value;
      }
      c.form_version = std::max(c.form_version.value_or(0), form->version);
      c.hlc = next_hlc();
      update_change(*last);
    } else {
      if (creating) insert_record(row);
      OutboxEntry e = new_change(row, "upsert");
      e.change.form_version = form->version;
      // Stored compact (no zero entries): a new record's base is "{}".
      json base = json::object();
      for (const auto& [name, value] : req.fields.items())
        if (std::int64_t b = base_for(name)) base[name] = b;
      if (row.version) base[""] = row.version;
      insert_change(e, dump_text(req.fields), dump_text(base));
      if (creating) return id;
    }
    if (form->version > row.form_version) {
      row.form_version = form->version;
      update_record(row);
    }
    return id;
  }

  void remove_locked(const std::string& raw_id) {
    std::string id = lower(raw_id);
    auto row = load_record(id);
    if (!row) fail(Errc::not_found, "no record " + raw_id);
    if (row->visible_deleted()) fail(Errc::deleted, "record " + id + " is already deleted");
    auto pend = pending(id);
    bool ever_sent = row->version != 0 || std::any_of(pend.begin(), pend.end(),
                                                      [](const auto& e) { return e.attempted; });
    if (!ever_sent) {
      // The server has never seen this record: no change of it was ever sent, and
      // it was never pulled. Its unsent changes are dropped instead of sending a
      // create and a delete (nothing about it leaves the phone); a local tombstone
      // remains. Counters are not reused, so the gap is harmless.
      db->query("DELETE FROM outbox WHERE record = ?1").bind(1, id).run();
      db->query("DELETE FROM reviews WHERE record = ?1").bind(1, id).run();
      row->synced = json::object();
    } else {
      OutboxEntry e = new_change(*row, "delete");
      e.change.base[""] = row->version;
      insert_change(e);
    }
    row->local_deleted = true;
    update_record(*row);
  }

  // ---- views -------------------------------------------------------------------

  RecordView view(const RecordRow& row) {
    RecordView v;
    v.id = row.id;
    v.form = row.form;
    v.form_version = row.form_version;
    v.scope = row.scope;
    v.deleted = row.visible_deleted();
    v.version = row.version;
    for (const auto& [name, pair] : row.synced.items()) {
      FieldState& f = v.fields[name];
      f.value = pair[0];
      f.version = pair[1].get<std::int64_t>();
    }
    auto pend = pending(row.id);
    v.dirty = !pend.empty();
    for (const auto& e : pend) {
      for (const auto& [name, value] : e.change.fields.items()) {
        FieldState& f = v.fields[name];
        f.value = value;
        f.dirty = true;
      }
    }
    for (auto& [field, mark] : reviews(row.id)) {
      if (field.empty()) {
        v.under_review = true;
        continue;
      }
      FieldState& f = v.fields[field];
      f.under_review = true;
      f.conflict_id = mark.conflict;
      f.my_value = std::move(mark.my_value);
    }
    return v;
  }

  // ---- applying a sync round trip ----------------------------------------------

  void add_receipt(const Change& c, const ChangeResult& r) {
    db->query(
          "INSERT INTO receipts(change_id, record, status, seq, received_at) "
          "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(change_id) DO NOTHING")
        .bind(1, c.id)
        .bind(2, c.record)
        .bind(3, r.status)
        .bind(4, r.seq)
        .bind(5, now_text())
        .run();
  }

  // `sent`: the change as the caller sent it, when it has it. A change is only
  // sent once attempted, and an attempted outbox row never changes
  // (update_change), so the row is then only looked up, not read and parsed again.
  // `fields_text`: sent's fields as stored, when sent->fields is null (OutboxBatch).
  void apply_result(const ChangeResult& r, const Change* sent, const std::string* fields_text) {
    auto cid = ChangeId::parse(r.id);
    if (!cid || cid->device_id != device_id) return;
    std::optional<OutboxEntry> entry;
    std::string stored_fields;  // the outbox's text of the change's fields
    {
      auto q = db->query("SELECT change_id, attempted, fields FROM outbox WHERE counter = ?1");
      q.bind(1, cid->counter);
      // Not in the outbox (any more): its result was applied before - a response
      // applied twice changes nothing the second time.
      if (!q.step() || q.text_view(0) != r.id) return;
      if (!sent || q.int64(1) == 0) entry = outbox_entry(cid->counter);
      stored_fields = q.text_view(2);
    }
    const Change* given = entry ? &entry->change : sent;
    const bool unparsed = !entry && given->fields.is_null() && fields_text;
    const std::int64_t counter = cid->counter;
    auto row = load_record(given->record);
    if (!row) fail(Errc::internal, "outbox change " + given->id + " has no record");
    delete_change(counter);
    auto later = pending(given->record, counter);

    auto version_of = [&](const std::string& f) {
      auto it = r.versions.find(f);
      return it == r.versions.end() ? r.seq : it->second;
    };
    if (r.status == "applied" && r.conflicts.empty() && given->op == "upsert" &&
        row->synced.empty() && later.empty()) {
      // The common case of a push: the first answer for a record created here
      // (the server had nothing of it), with no later edit to rebase. Its synced
      // values are the change's, written straight to text: what the general path
      // below writes, without building and freeing a copy of every value.
      // A version of 0 or less is left out: never above "not synced".
      std::string dumped;  // the fields as text, when they were given parsed
      if (!unparsed) dumped = dump_text(given->fields);
      const std::string& text = unparsed ? *fields_text : dumped;
      const bool one_version =
          r.seq >= 1 && std::all_of(r.versions.begin(), r.versions.end(),
                                    [&](const auto& v) { return v.second == r.seq; });
      std::string synced;
      if (one_version && text == stored_fields) {
        // Every value at the seq, and the text is the outbox's own (put wrote it
        // from parsed values, and the server read it in this request): the
        // compact form is that text with the version in front, read by no one.
        auto compact = detail::compact_synced(text, r.seq);
        if (!compact) fail(Errc::corrupt, "stored change fields is not a JSON object");
        synced = std::move(*compact);
      } else {
        try {
          append_paired_members(synced, text, version_of);
        } catch (const std::invalid_argument&) {  // as parse_stored says it
          fail(Errc::corrupt, "stored change fields is not valid JSON");
        }
      }
      row->version = std::max(row->version, r.seq);
      update_record(*row, synced);
      add_receipt(*given, r);
      applied_records.erase(row->id);  // apply_entry reads the row back if it needs it
      return;
    }
    std::optional<Change> parsed;  // the rest reads the fields' values
    if (unparsed) {
      parsed = *given;
      parsed->fields = parse_stored(*fields_text, "change fields");
    }
    const Change& c = parsed ? *parsed : *given;

    if (r.status == "rejected") {
      RejectReason reason =
          r.error.value_or(RejectReason{"internal", "rejected without a reason", ""});
      db->query(
            "INSERT INTO rejected(change_id, counter, record, change, code, message, field, "
            "rejected_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(change_id) DO NOTHING")
          .bind(1, c.id)
          .bind(2, counter)
          .bind(3, c.record)
          .bind(4, c.to_json().dump())
          .bind(5, reason.code)
          .bind(6, reason.message)
          .bind(7, reason.field)
          .bind(8, now_text())
          .run();
      if (c.op == "delete") row->local_deleted = false;
      if (row->version == 0 && later.empty()) {
        // A create the server refused, of a record it never had: the record goes
        // away locally; the rejected change keeps every value the officer typed.
        db->query("DELETE FROM records WHERE id = ?1").bind(1, row->id).run();
        applied_records.erase(row->id);
      } else {
        update_record(*row);
      }
      return;
    }

    std::map<std::string, std::int64_t> field_conflicts;
    std::int64_t record_conflict = 0;  // a delete conflict: nothing of the change applied
    std::int64_t duplicate = 0;
    for (const auto& ref : r.conflicts) {
      if (ref.kind == "delete")
        record_conflict = ref.id;
      else if (ref.kind == "field" && !ref.field.empty())
        field_conflicts[ref.field] = ref.id;
      else if (ref.field.empty())
        duplicate = ref.id;
      else
        field_conflicts[ref.field] = ref.id;
    }

    if (c.op == "delete") {
      if (r.status == "applied") {
        if (r.seq > row->tomb_seq) {
          row->server_deleted = true;
          row->tomb_seq = r.seq;
        }
        row->version = std::max(row->version, r.seq);
      } else {
        // The server kept the record (someone changed it after this officer saw
        // it): it is live again here, under review.
        std::int64_t id =
            record_conflict ? record_conflict : (r.conflicts.empty() ? 0 : r.conflicts.front().id);
        if (id) set_review(row->id, "", id, std::nullopt);
      }
      row->local_deleted = false;
    } else {
      for (const auto& [name, value] : c.fields.items()) {
        if (record_conflict) {
          set_review(row->id, name, record_conflict, value);
          continue;
        }
        if (auto fc = field_conflicts.find(name); fc != field_conflicts.end()) {
          // The server value stays (it becomes visible again unless a later edit
          // of the field is pending); the officer's value is kept for review.
          set_review(row->id, name, fc->second, value);
          continue;
        }
        std::int64_t v = version_of(name);
        if (v > row->synced_version(name)) row->synced[name] = json::array({value, v});
      }
      if (record_conflict) {
        set_review(row->id, "", record_conflict, std::nullopt);
      } else {
        row->version = std::max(row->version, r.seq);
        // Rebase: a later pending change built on the same base as this one was
        // built on top of this value, so its base moves to the new version.
        for (auto& l : later) {
          if (l.attempted || l.change.op != "upsert") continue;
          bool changed = false;
          for (const auto& [name, value] : l.change.fields.items()) {
            if (!c.fields.contains(name) || field_conflicts.count(name)) continue;
            if (base_of(l.change.base, name) == base_of(c.base, name)) {
              l.change.base[name] = version_of(name);
              changed = true;
            }
          }
          if (base_of(l.change.base, "") == base_of(c.base, "")) {
            l.change.base[""] = r.seq;
            changed = true;
          }
          if (changed) update_change(l);
        }
      }
    }
    if (duplicate) set_review(row->id, "", duplicate, std::nullopt);
    update_record(*row);
    add_receipt(c, r);
    applied_records.insert_or_assign(row->id, std::move(*row));
  }

  // Store::apply_sync; `fields_text` (OutboxBatch's) is sent's fields as stored.
  Result<void> apply_sync(const std::vector<Change>& sent,
                          const std::vector<std::string>* fields_text,
                          const SyncResponse& response);

  void apply_entry(const LogEntry& e) {
    RecordRow* row = nullptr;
    bool is_new = false;
    if (auto known = applied_records.find(e.record); known != applied_records.end()) {
      row = &known->second;
    } else {
      auto existing = load_record(e.record);
      RecordRow fresh;
      if (existing) {
        fresh = std::move(*existing);
      } else {
        is_new = true;
        fresh.id = e.record;
        fresh.form = e.form;
        fresh.form_version = e.form_version;
        fresh.scope = e.scope;
        if (e.op == "upsert" && e.fields.is_object() && e.seq >= 1) {
          // Every value at the entry's seq: stored compact from the values'
          // text, not paired value by value. Not cached: a later entry of the
          // record in this answer reads it back.
          fresh.version = e.seq;
          insert_record(fresh, *detail::compact_synced(dump_text(e.fields), e.seq));
          entry_done(e, fresh.id);
          return;
        }
      }
      row = &applied_records.insert_or_assign(e.record, std::move(fresh)).first->second;
    }
    bool changed = is_new;
    if (e.op == "delete" || e.op == "revive") {
      if (e.seq > row->tomb_seq) {
        row->server_deleted = e.op == "delete";
        row->tomb_seq = e.seq;
        changed = true;
      }
    }
    if (e.op != "delete" && e.fields.is_object()) {
      for (const auto& [name, value] : e.fields.items()) {
        if (e.seq > row->synced_version(name)) {
          row->synced[name] = json::array({value, e.seq});
          changed = true;
        }
      }
    }
    if (e.seq > row->version || e.form_version > row->form_version) changed = true;
    row->version = std::max(row->version, e.seq);
    row->form_version = std::max(row->form_version, e.form_version);
    if (is_new)
      insert_record(*row);
    else if (changed)
      update_record(*row);
    entry_done(e, row->id);
  }

  // What every pulled entry does after its record is written: reviews, clock.
  void entry_done(const LogEntry& e, const std::string& record) {
    for (const auto& ref : e.conflicts) {
      if (ref.status == "resolved")
        clear_reviews(record, ref.id);
      else
        set_review(record, ref.kind == "delete" || ref.kind == "duplicate_record" ? "" : ref.field,
                   ref.id, std::nullopt);
    }
    if (auto h = Hlc::parse(e.hlc); h) {
      clock.observe(*h);
      hlc_used = true;
    }
  }
};

// ---- RecordView / StoreStatus ---------------------------------------------------

json RecordView::to_json() const {
  json fs = json::object();
  for (const auto& [name, f] : fields) {
    json j = {{"value", f.value}, {"version", f.version}, {"dirty", f.dirty}};
    if (f.under_review) {
      j["under_review"] = true;
      j["conflict"] = f.conflict_id;
      if (f.my_value) j["my_value"] = *f.my_value;
    }
    fs[name] = std::move(j);
  }
  return {{"id", id},
          {"form", form},
          {"form_version", form_version},
          {"scope", scope},
          {"deleted", deleted},
          {"dirty", dirty},
          {"version", version},
          {"under_review", under_review},
          {"fields", std::move(fs)}};
}

json StoreStatus::to_json() const {
  return {{"device_id", device_id},       {"schema_version", schema_version},
          {"records", records},           {"deleted", deleted},
          {"pending", pending},           {"rejected", rejected},
          {"under_review", under_review}, {"cursor", cursor},
          {"server_url", server_url},     {"user", user},
          {"last_sync_at", last_sync_at}};
}

// ---- Store ---------------------------------------------------------------------

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::open(const StoreOptions& options) {
  return guarded([&]() -> Result<std::unique_ptr<Store>> {
    if (options.path.empty()) fail(Errc::invalid_argument, "no store path given");
    auto impl = std::make_unique<Impl>();
    impl->path = options.path;
    impl->wall = options.wall_clock ? options.wall_clock : HlcClock::WallClock(system_now_ms);
    impl->clock = HlcClock(impl->wall);
    impl->db = Db::open(options.path, options.create);
    sqlite3_busy_timeout(impl->db->handle(), kBusyTimeoutMs);
    try {
      impl->open_checked();
    } catch (const Failure& f) {
      // SQLite found damage past the checks above (e.g. while migrating).
      if (f.error.code != Errc::corrupt || f.error.message.find("salvage") != std::string::npos ||
          f.error.message.find("not a fieldsync store") != std::string::npos)
        throw;
      fail(Errc::corrupt,
           options.path + ": " + f.error.message + salvage_hint(options.path, false));
    }
    return std::unique_ptr<Store>(new Store(std::move(impl)));
  });
}

const std::string& Store::device_id() const {
  return impl_->device_id;
}

Result<void> Store::import_form(const Form& form) {
  return guarded([&]() -> Result<void> {
    if (form.version < 1)
      fail(Errc::invalid_argument, "a form to import needs a version >= 1 (as published)",
           "version");
    // Re-parse what will be stored, so a Form built in code is checked like a file.
    json definition = form.to_json();
    auto parsed = Form::parse(definition);
    if (!parsed) return std::move(parsed).error();
    impl_->write([&] {
      std::optional<std::string> stored;
      {
        auto q = impl_->db->query("SELECT definition FROM forms WHERE id = ?1 AND version = ?2");
        q.bind(1, form.id).bind(2, form.version);
        if (q.step()) stored = q.text(0);
      }
      if (stored) {
        auto old = Form::parse_text(*stored);
        if (!old || !old->same_definition(form))
          fail(Errc::invalid_argument,
               "form " + form.id + " version " + std::to_string(form.version) +
                   " is already imported with a different definition",
               "version");
        return;
      }
      impl_->db->query("INSERT INTO forms(id, version, definition) VALUES(?1, ?2, ?3)")
          .bind(1, form.id)
          .bind(2, form.version)
          .bind(3, definition.dump())
          .run();
    });
    impl_->form_cache.clear();
    impl_->latest_form.clear();
    return {};
  });
}

Result<std::vector<Form>> Store::forms() const {
  return guarded([&]() -> Result<std::vector<Form>> {
    return impl_->read([&] {
      std::vector<Form> out;
      auto q = impl_->db->query(
          "SELECT definition FROM forms f WHERE version = "
          "(SELECT max(version) FROM forms g WHERE g.id = f.id) ORDER BY id");
      while (q.step()) {
        auto f = Form::parse_text(q.text_view(0));
        if (!f) fail(Errc::corrupt, "a stored form cannot be read: " + f.error().to_string());
        out.push_back(std::move(f).value());
      }
      return out;
    });
  });
}

Result<Form> Store::form(const std::string& id, std::optional<std::int64_t> version) const {
  return guarded([&]() -> Result<Form> {
    return impl_->read([&] { return Form(*impl_->form_for(id, version)); });
  });
}

Result<std::string> Store::put(const PutRequest& request) {
  return guarded([&]() -> Result<std::string> {
    return impl_->write([&] { return impl_->put_locked(request); });
  });
}

Result<std::vector<std::string>> Store::put_many(const std::vector<PutRequest>& requests) {
  return guarded([&]() -> Result<std::vector<std::string>> {
    return impl_->write([&] {
      std::vector<std::string> ids;
      ids.reserve(requests.size());
      for (const auto& r : requests) ids.push_back(impl_->put_locked(r));
      return ids;
    });
  });
}

Result<void> Store::remove(const std::string& record_id) {
  return guarded([&]() -> Result<void> {
    impl_->write([&] { impl_->remove_locked(record_id); });
    return {};
  });
}

Result<RecordView> Store::get(const std::string& record_id) const {
  return guarded([&]() -> Result<RecordView> {
    return impl_->read([&] {
      auto row = impl_->load_record(lower(record_id));
      if (!row) fail(Errc::not_found, "no record " + record_id);
      return impl_->view(*row);
    });
  });
}

Result<std::vector<RecordView>> Store::list(const RecordQuery& query) const {
  return guarded([&]() -> Result<std::vector<RecordView>> {
    return impl_->read([&] {
      std::vector<RecordRow> rows;
      {
        auto q = impl_->db->query(
            "SELECT id, form, form_version, scope, version, server_deleted, tomb_seq, "
            "local_deleted, synced FROM records WHERE ?1 = '' OR form = ?1 ORDER BY id");
        q.bind(1, query.form);
        while (q.step()) {
          if (query.limit >= 0 && static_cast<std::int64_t>(rows.size()) >= query.limit) break;
          // Filter on the plain columns before parsing a record's values.
          bool deleted = q.int64(5) != 0 || q.int64(7) != 0;
          if (!query.include_deleted && deleted) continue;
          if (!query.scope_prefix.empty() && !scope_covers(query.scope_prefix, q.text_view(3)))
            continue;
          rows.push_back(read_record(q));
        }
      }
      std::vector<RecordView> out;
      out.reserve(rows.size());
      for (const auto& r : rows) out.push_back(impl_->view(r));
      return out;
    });
  });
}

Result<std::vector<OutboxEntry>> Store::outbox(std::int64_t limit) const {
  return guarded([&]() -> Result<std::vector<OutboxEntry>> {
    return impl_->read([&] {
      std::vector<OutboxEntry> out;
      auto q = impl_->db->query(
          "SELECT counter, change_id, record, op, form, form_version, scope, fields, base, hlc, "
          "attempted, created_at FROM outbox ORDER BY counter LIMIT ?1");
      q.bind(1, limit < 0 ? std::int64_t{-1} : limit);
      while (q.step()) out.push_back(read_outbox(q, impl_->zero_bases_through));
      return out;
    });
  });
}

Result<std::vector<Change>> Store::next_batch(std::int64_t max) {
  return next_batch(max, {});
}

Result<std::vector<Change>> Store::next_batch(std::int64_t max,
                                              const std::vector<Change>& in_flight) {
  auto b = next_batch_encoded(max, in_flight, /*encode=*/false);
  if (!b) return std::move(b).error();
  return std::move(b->changes);
}

Result<OutboxBatch> Store::next_batch_encoded(std::int64_t max,
                                              const std::vector<Change>& in_flight) {
  return next_batch_encoded(max, in_flight, /*encode=*/true);
}

Result<OutboxBatch> Store::next_batch_encoded(std::int64_t max,
                                              const std::vector<Change>& in_flight, bool encode) {
  return guarded([&]() -> Result<OutboxBatch> {
    if (max < 1) fail(Errc::invalid_argument, "a batch holds at least one change");
    std::int64_t after = 0;
    std::set<std::string> records;  // of the batch so far, the in-flight one's included
    for (const auto& c : in_flight) {
      auto id = ChangeId::parse(c.id);
      if (!id || id->device_id != impl_->device_id)
        fail(Errc::invalid_argument, "change " + c.id + " is not one of this device's");
      after = std::max(after, id->counter);
      records.insert(c.record);
    }
    return impl_->write([&] {
      std::vector<OutboxEntry> batch;
      OutboxBatch out;
      {
        auto q = impl_->db->query(
            "SELECT counter, change_id, record, op, form, form_version, scope, fields, base, hlc, "
            "attempted, created_at FROM outbox WHERE counter > ?2 ORDER BY counter LIMIT ?1");
        q.bind(1, max).bind(2, after);
        while (q.step()) {
          OutboxEntry e = read_outbox(q, impl_->zero_bases_through, /*parse_fields=*/!encode);
          if (!records.insert(e.change.record).second) break;
          batch.push_back(std::move(e));
          if (encode) out.fields_text.emplace_back(q.text_view(7));
        }
      }
      // The batch is every outbox row from its first counter to its last: one
      // statement marks them all.
      if (std::any_of(batch.begin(), batch.end(),
                      [](const OutboxEntry& e) { return !e.attempted; }))
        impl_->db
            ->query(
                "UPDATE outbox SET attempted = 1 WHERE counter BETWEEN ?1 AND ?2 AND attempted = 0")
            .bind(1, batch.front().counter)
            .bind(2, batch.back().counter)
            .run();
      out.changes.reserve(batch.size());
      for (auto& e : batch) out.changes.push_back(std::move(e.change));
      if (encode) out.text = SyncRequest::encode_changes(out.changes, out.fields_text);
      return out;
    });
  });
}

Result<void> Store::apply_sync(const std::vector<Change>& sent, const SyncResponse& response) {
  return impl_->apply_sync(sent, nullptr, response);
}

Result<void> Store::apply_batch(const OutboxBatch& sent, const SyncResponse& response) {
  if (sent.fields_text.size() != sent.changes.size())
    return Error(Errc::invalid_argument, "a batch needs one fields text per change");
  return impl_->apply_sync(sent.changes, &sent.fields_text, response);
}

Result<void> Store::Impl::apply_sync(const std::vector<Change>& sent,
                                     const std::vector<std::string>* fields_text,
                                     const SyncResponse& response) {
  return guarded([&]() -> Result<void> {
    // change id -> its index in sent
    std::unordered_map<std::string_view, std::size_t> sent_by_id;
    for (std::size_t i = 0; i < sent.size(); ++i) sent_by_id.emplace(sent[i].id, i);
    std::set<std::string> answered;
    for (const auto& r : response.results) {
      if (!sent_by_id.count(r.id))
        fail(Errc::protocol, "the server answered for change " + r.id + ", which was not sent");
      if (!answered.insert(r.id).second)
        fail(Errc::protocol, "the server answered twice for change " + r.id);
      if (r.status != "applied" && r.status != "conflict" && r.status != "rejected")
        fail(Errc::protocol, "unknown result status '" + r.status + "' for " + r.id);
      if (r.status != "rejected" && r.seq < 1)
        fail(Errc::protocol, "result for " + r.id + " has no seq");
    }
    if (response.cursor < 0) fail(Errc::protocol, "negative cursor");
    std::vector<const LogEntry*> entries;
    for (const auto& e : response.changes) {
      if (e.seq < 1 || !is_uuid(e.record))
        fail(Errc::protocol, "malformed log entry (seq " + std::to_string(e.seq) + ")");
      if (e.op != "upsert" && e.op != "delete" && e.op != "revive")
        fail(Errc::protocol, "unknown log entry op '" + e.op + "'");
      if (!e.fields.is_object() && !e.fields.is_null())
        fail(Errc::protocol, "log entry fields must be an object");
      if (e.fields.is_object() && e.fields.contains(""))  // "" is no field (synced_text.hpp)
        fail(Errc::protocol, "log entry " + std::to_string(e.seq) + " has a field without a name");
      entries.push_back(&e);
    }
    std::stable_sort(entries.begin(), entries.end(),
                     [](const LogEntry* a, const LogEntry* b) { return a->seq < b->seq; });

    struct Forget {  // the cache never outlives this call, whatever happens
      std::unordered_map<std::string, RecordRow>& records;
      ~Forget() { records.clear(); }
    } forget{applied_records};
    write(
        [&] {
          for (const auto& r : response.results) {
            auto it = sent_by_id.find(r.id);
            if (it == sent_by_id.end())
              apply_result(r, nullptr, nullptr);
            else
              apply_result(r, &sent[it->second],
                           fields_text ? &(*fields_text)[it->second] : nullptr);
          }
          for (const LogEntry* e : entries) apply_entry(*e);
          const std::int64_t old = meta_int("cursor");
          std::int64_t cursor = std::max(old, response.cursor);
          {
            // Entries of this device's own changes right above the cursor are
            // covered by their results (receipts), which is why a pull leaves
            // them out (additions D and F): the cursor moves over them, and the
            // next pull does not read them again. The first seq that is not a
            // receipt here - anyone else's entry, or a gap - stops it. Receipts
            // from before a cursor reset do not count (reset_cursor).
            auto q =
                db->query("SELECT seq FROM receipts WHERE seq > ?1 AND seqno > ?2 ORDER BY seq");
            q.bind(1, cursor).bind(2, meta_int("receipts_stale_through"));
            while (q.step() && q.int64(0) == cursor + 1) ++cursor;
          }
          if (cursor > old) set_meta("cursor", std::to_string(cursor));
          set_meta("last_sync_at", now_text());
          db->query("DELETE FROM receipts WHERE seqno <= (SELECT max(seqno) FROM receipts) - ?1")
              .bind(1, kReceiptsKept)
              .run();
        },
        Commit::relaxed);  // lost only with power, and then answered again: see write()
    return {};
  });
}

Result<std::int64_t> Store::cursor() const {
  return guarded([&]() -> Result<std::int64_t> {
    return impl_->read([&] { return impl_->meta_int("cursor"); });
  });
}

Result<std::int64_t> Store::pending_count() const {
  return guarded([&]() -> Result<std::int64_t> {
    return impl_->read([&] {
      auto q = impl_->db->query("SELECT count(*) FROM outbox");
      return q.step() ? q.int64(0) : std::int64_t{0};
    });
  });
}

Result<std::int64_t> Store::last_counter() const {
  return guarded([&]() -> Result<std::int64_t> {
    return impl_->read(
        [&] { return std::max<std::int64_t>(1, impl_->meta_int("next_counter")) - 1; });
  });
}

Result<void> Store::reset_cursor() {
  return guarded([&]() -> Result<void> {
    impl_->write([&] {
      impl_->set_meta("cursor", "0");
      // The log is read again from the start, maybe from another server (one
      // restored from a backup reuses seqs): the seqs of the receipts so far
      // may name other entries there, and the cursor no longer moves over them.
      auto q = impl_->db->query("SELECT coalesce(max(seqno), 0) FROM receipts");
      q.step();
      impl_->set_meta("receipts_stale_through", std::to_string(q.int64(0)));
    });
    return {};
  });
}

Result<StoreStatus> Store::status() const {
  return guarded([&]() -> Result<StoreStatus> {
    return impl_->read([&] {
      StoreStatus s;
      s.device_id = impl_->device_id;
      s.schema_version = static_cast<int>(impl_->pragma_int("PRAGMA user_version"));
      auto count = [&](const char* sql) {
        auto q = impl_->db->query(sql);
        return q.step() ? q.int64(0) : 0;
      };
      s.records =
          count("SELECT count(*) FROM records WHERE local_deleted = 0 AND server_deleted = 0");
      s.deleted =
          count("SELECT count(*) FROM records WHERE local_deleted != 0 OR server_deleted != 0");
      s.pending = count("SELECT count(*) FROM outbox");
      s.rejected = count("SELECT count(*) FROM rejected");
      s.under_review = count("SELECT count(*) FROM (SELECT DISTINCT record, field FROM reviews)");
      s.cursor = impl_->meta_int("cursor");
      s.last_sync_at = impl_->meta("last_sync_at").value_or("");
      auto setting = [&](const char* key) {
        auto q = impl_->db->query("SELECT value FROM settings WHERE key = ?1");
        q.bind(1, key);
        return q.step() ? q.text(0) : std::string();
      };
      s.server_url = setting("server_url");
      s.user = setting("user");
      return s;
    });
  });
}

Result<std::vector<RejectedChange>> Store::rejected() const {
  return guarded([&]() -> Result<std::vector<RejectedChange>> {
    return impl_->read([&] {
      std::vector<RejectedChange> out;
      auto q = impl_->db->query(
          "SELECT change, code, message, field, rejected_at FROM rejected ORDER BY counter");
      while (q.step()) {
        RejectedChange r;
        auto c = decode_change(parse_stored(q.text_view(0), "rejected change"));
        if (!c)
          fail(Errc::corrupt, "a stored rejected change cannot be read: " + c.error().to_string());
        r.change = std::move(c).value();
        r.reason = RejectReason{q.text(1), q.text(2), q.text(3)};
        r.rejected_at = q.text(4);
        out.push_back(std::move(r));
      }
      return out;
    });
  });
}

Result<void> Store::discard_rejected(const std::string& change_id) {
  return guarded([&]() -> Result<void> {
    impl_->write([&] {
      impl_->db->query("DELETE FROM rejected WHERE change_id = ?1").bind(1, change_id).run();
      if (sqlite3_changes(impl_->db->handle()) == 0)
        fail(Errc::not_found, "no rejected change " + change_id);
    });
    return {};
  });
}

Result<std::vector<Receipt>> Store::receipts(std::int64_t limit) const {
  return guarded([&]() -> Result<std::vector<Receipt>> {
    return impl_->read([&] {
      std::vector<Receipt> out;
      auto q = impl_->db->query(
          "SELECT change_id, record, status, seq, received_at FROM receipts "
          "ORDER BY seqno DESC LIMIT ?1");
      q.bind(1, limit < 0 ? std::int64_t{-1} : limit);
      while (q.step())
        out.push_back(Receipt{q.text(0), q.text(1), q.text(2), q.int64(3), q.text(4)});
      return out;
    });
  });
}

Result<void> Store::set_setting(const std::string& key, const std::string& value) {
  return guarded([&]() -> Result<void> {
    if (key.empty()) fail(Errc::invalid_argument, "a setting needs a name");
    impl_->write([&] {
      impl_->db
          ->query(
              "INSERT INTO settings(key, value) VALUES(?1, ?2) "
              "ON CONFLICT(key) DO UPDATE SET value = excluded.value")
          .bind(1, key)
          .bind(2, value)
          .run();
    });
    return {};
  });
}

Result<std::optional<std::string>> Store::setting(const std::string& key) const {
  return guarded([&]() -> Result<std::optional<std::string>> {
    return impl_->read([&]() -> std::optional<std::string> {
      auto q = impl_->db->query("SELECT value FROM settings WHERE key = ?1");
      q.bind(1, key);
      if (!q.step()) return std::nullopt;
      return q.text(0);
    });
  });
}

}  // namespace fieldsync
