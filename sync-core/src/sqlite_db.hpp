// A thin wrapper over the SQLite C API for the device store: one connection,
// prepared statements cached for the life of the connection, and SQLite error
// codes turned into fieldsync errors. Private to sync-core (not installed).
//
// Failures are thrown as detail::Failure; the store catches them at its public
// entry points (store.cpp, `guarded`), so they never leave sync-core.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "fieldsync/error.hpp"

namespace fieldsync::detail {

// An expected failure travelling up to the nearest public entry point.
struct Failure {
  Error error;
};

[[noreturn]] inline void fail(Errc code, std::string message, std::string field = {}) {
  throw Failure{Error(code, std::move(message), std::move(field))};
}

inline Errc errc_from_sqlite(int rc) noexcept {
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

// One prepared statement in use. Binds and reads columns; resets the statement and
// clears its bindings when it goes out of scope, so a cached statement is always
// ready for the next user. Text binds are copied (SQLITE_TRANSIENT): callers may
// pass temporaries.
class Query {
 public:
  Query(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~Query() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& bind(int i, std::int64_t v) {
    check(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Query& bind(int i, int v) { return bind(i, static_cast<std::int64_t>(v)); }
  Query& bind(int i, bool v) { return bind(i, static_cast<std::int64_t>(v ? 1 : 0)); }
  Query& bind(int i, std::string_view v) {
    check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Query& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  Query& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
  Query& bind(int i, const std::optional<std::int64_t>& v) {
    return v ? bind(i, *v) : bind_null(i);
  }
  Query& bind_null(int i) {
    check(sqlite3_bind_null(stmt_, i));
    return *this;
  }

  // Steps once: true when a row is available, false when done.
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    check(rc);
    return false;
  }
  // Runs a statement that returns no rows.
  void run() {
    while (step()) {
    }
  }

  bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string(p, static_cast<std::size_t>(n)) : std::string();
  }
  std::string_view text_view(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string_view(p, static_cast<std::size_t>(n)) : std::string_view();
  }

 private:
  void check(int rc) const {
    if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return;
    fail(errc_from_sqlite(rc), std::string("sqlite: ") + sqlite3_errmsg(db_));
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

// One connection and its statement cache. Not thread-safe (one Store, one thread).
class Db {
 public:
  // Opens `path`; `create` allows creating a missing file. Fails with
  // Errc::not_found when the file is missing and `create` is false.
  static std::unique_ptr<Db> open(const std::string& path, bool create) {
    sqlite3* raw = nullptr;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
    std::unique_ptr<Db> db(new Db(raw));
    if (rc != SQLITE_OK) {
      if (!create && (rc & 0xff) == SQLITE_CANTOPEN) fail(Errc::not_found, "no store at " + path);
      fail(errc_from_sqlite(rc),
           "cannot open " + path + ": " + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
    }
    sqlite3_extended_result_codes(raw, 1);
    return db;
  }

  ~Db() {
    cache_.clear();
    sqlite3_close_v2(db_);
  }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  sqlite3* handle() const { return db_; }

  // Runs one or more statements without results.
  void exec(const char* sql) {
    char* msg = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &msg);
    if (rc != SQLITE_OK) {
      std::string text = msg ? msg : sqlite3_errstr(rc);
      sqlite3_free(msg);
      fail(errc_from_sqlite(rc), "sqlite: " + text);
    }
  }
  // For cleanup paths (ROLLBACK): never throws, returns the SQLite code.
  int exec_noexcept(const char* sql) noexcept {
    return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  }

  // A cached prepared statement, ready to bind. `sql` must outlive the Db (a
  // string literal): it is the cache key.
  Query query(std::string_view sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      sqlite3_stmt* stmt = nullptr;
      int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                  SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
      if (rc != SQLITE_OK)
        fail(errc_from_sqlite(rc), std::string("sqlite: ") + sqlite3_errmsg(db_));
      it = cache_.emplace(sql, Stmt(stmt)).first;
    }
    return Query(db_, it->second.get());
  }

  // Drops every cached statement (before closing, or after a schema change).
  void clear_cache() { cache_.clear(); }

 private:
  explicit Db(sqlite3* db) : db_(db) {}

  struct Finalize {
    void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
  };
  using Stmt = std::unique_ptr<sqlite3_stmt, Finalize>;

  sqlite3* db_;
  std::unordered_map<std::string_view, Stmt> cache_;
};

}  // namespace fieldsync::detail
