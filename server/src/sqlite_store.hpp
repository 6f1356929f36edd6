// The SQLite implementation of ServerStore: one file in WAL mode, one write
// connection (used by the writer thread only) and a small pool of read connections
// that see committed snapshots. The schema is migrated with PRAGMA user_version.
#pragma once

#include <memory>
#include <string>

#include "server_store.hpp"

namespace fieldsync::server {

inline constexpr int kServerSchemaVersion = 3;

struct SqliteStoreOptions {
  std::string path;
  bool create = true;          // create the file when absent
  int max_readers = 4;         // read connections opened on demand, at most this many
  bool durable = true;         // synchronous=FULL (an acknowledged commit survives power loss)
  int busy_timeout_ms = 5000;  // another process (the CLI) holding the write lock
  // WAL checkpoints: a thread of the store copies the WAL into the database once
  // a commit leaves it this many pages long (SQLite's own threshold)...
  int wal_background_pages = 1000;
  // ...and the writer does it itself past this many (~32 MB with 4 KiB pages),
  // which a steady stream of commits needs for the WAL to start over.
  int wal_writer_pages = 8000;
  // The schema a new or older file is migrated to. Only tests of migrations set
  // an older one; the store's methods assume the current schema.
  int schema_version = kServerSchemaVersion;
};

// Opens (and creates or migrates) a server store. A file written by a newer
// schema -> Errc::schema_too_new; a file that is not a fieldsync server store ->
// Errc::corrupt; a missing file with create=false -> Errc::not_found.
Result<std::unique_ptr<ServerStore>> open_sqlite_store(const SqliteStoreOptions& options);

}  // namespace fieldsync::server
