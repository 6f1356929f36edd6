// Salvage: the recovery path for a device store that Store::open refuses as
// damaged (Errc::corrupt). Reads whatever rows can still be read from the file,
// table by table and row by row, stepping over damaged pages, and exports them as
// JSON, with an account of what could not be read. Never writes to the damaged
// file (it works on a private copy, WAL included), never throws, and never treats
// an unreadable row as absent: every key range it could not read is listed, so no
// unsynced change disappears silently. docs/storage.md "Salvage" has the export
// format; `fieldsync-cli salvage --db FILE --out EXPORT.json` runs it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fieldsync/error.hpp"

namespace fieldsync {

using json = nlohmann::json;

// What was read of one table.
struct SalvageTable {
  std::string name;
  bool found = false;             // the table was found in the schema (or could be read)
  std::int64_t rows = 0;          // rows exported
  std::int64_t damaged_rows = 0;  // exported, but a JSON column did not parse or a text held a NUL
  // Row keys (rowid; the change counter for the outbox) that could not be read:
  // [first, last] inclusive, last = null when the rest of the table was lost.
  // Rows there, if there were any, are missing from the export.
  std::vector<std::pair<std::int64_t, std::optional<std::int64_t>>> unreadable;
  std::vector<std::string> errors;  // SQLite's messages, in order
  bool complete = false;            // read to its end with no error

  json to_json() const;
};

struct SalvageReport {
  std::string path;              // the damaged store
  bool opened = false;           // SQLite could read its schema at all
  bool header_repaired = false;  // the 100-byte file header was rebuilt on the copy
  std::vector<SalvageTable> tables;
  std::vector<std::string> errors;  // problems before any table could be read
  json document;                    // the export (docs/storage.md "Salvage")

  // Everything in the file was read (opened, every table complete, nothing damaged).
  bool complete() const;
  // The outbox table's account (a default one when it was not found).
  const SalvageTable& outbox() const;
  // A short human summary, one line per table.
  std::string summary() const;
  // {"complete", "opened", "header_repaired", "unsynced_changes" (outbox rows
  // exported), "tables": {name: SalvageTable::to_json()}} (the CLI's and the C
  // ABI's answer).
  json summary_json() const;
};

// Reads the store at `path` as well as it can. Fails only when `path` does not
// exist or cannot be copied (Errc::not_found, Errc::io): a store that cannot be
// read at all is a report with opened = false.
Result<SalvageReport> salvage_store(const std::string& path);

// As above, and writes report.document (pretty JSON) to `out_path`, which must
// not exist yet and must not be the store or its -wal/-shm files
// (Errc::invalid_argument). Written to a temporary file and renamed.
Result<SalvageReport> salvage_store(const std::string& path, const std::string& out_path);

}  // namespace fieldsync
