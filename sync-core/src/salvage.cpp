// Salvage of a damaged device store (salvage.hpp).
//
// Works on a copy of the file (and its -wal) in a private temporary directory, so
// the damaged original is never written to, not even by WAL recovery. Rowid tables
// (records, outbox, rejected, receipts) are read in rowid order; when SQLite
// reports damage, the next readable rowid is found by probing seeks (exponential,
// then a binary search back), the key range in between is reported as unreadable
// and reading goes on from there. WITHOUT ROWID tables (meta, settings, forms,
// reviews) are read until the first error. A file whose 100-byte header is gone
// gets a rebuilt header on the copy (page sizes tried in turn).
#include "fieldsync/salvage.hpp"

#include <sqlite3.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

#include <unistd.h>

#include "fieldsync/hlc.hpp"
#include "synced_text.hpp"

namespace fieldsync {
namespace {

namespace fs = std::filesystem;

constexpr int kExportFormat = 1;
constexpr std::int64_t kMinKey = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kMaxKey = std::numeric_limits<std::int64_t>::max();
// Bounds the work on a pathological file: resumptions per table.
constexpr int kMaxResumes = 100000;

// Columns of one table as schema 1 has them (docs/storage.md). `json_cols` are
// parsed; a column that does not parse is exported as text and the row marked.
struct TableSpec {
  const char* name;
  const char* export_key;   // key in the export document
  bool rowid;               // a rowid table (else WITHOUT ROWID: read until the first error)
  std::size_t key_columns;  // WITHOUT ROWID: the first columns form the primary key
  std::vector<const char*> columns;
  std::vector<const char*> json_cols;
};

const std::vector<TableSpec>& table_specs() {
  static const std::vector<TableSpec> specs = {
      {"outbox",
       "unsynced_changes",
       true,
       0,
       {"counter", "change_id", "record", "op", "form", "form_version", "scope", "fields", "base",
        "hlc", "attempted", "created_at"},
       {"fields", "base"}},
      {"rejected",
       "rejected",
       true,
       0,
       {"change_id", "counter", "record", "change", "code", "message", "field", "rejected_at"},
       {"change"}},
      {"records",
       "records",
       true,
       0,
       {"id", "form", "form_version", "scope", "version", "server_deleted", "tomb_seq",
        "local_deleted", "synced"},
       {"synced"}},
      {"reviews", "reviews", false, 3, {"record", "field", "conflict", "my_value"}, {"my_value"}},
      {"receipts",
       "receipts",
       true,
       0,
       {"seqno", "change_id", "record", "status", "seq", "received_at"},
       {}},
      {"meta", "meta", false, 1, {"key", "value"}, {}},
      {"settings", "settings", false, 1, {"key", "value"}, {}},
      {"forms", "forms", false, 2, {"id", "version", "definition"}, {"definition"}},
  };
  return specs;
}

// Settings never exported: the session token is a credential.
bool secret_setting(const std::string& key) {
  return key == "token";
}

struct Stmt {
  sqlite3_stmt* s = nullptr;
  ~Stmt() { sqlite3_finalize(s); }
};

std::string errmsg(sqlite3* db, int rc) {
  const char* m = db ? sqlite3_errmsg(db) : nullptr;
  return std::string(m ? m : sqlite3_errstr(rc)) + " (SQLite code " + std::to_string(rc) + ")";
}

std::string hex(const void* data, int n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  const auto* p = static_cast<const unsigned char*>(data);
  for (int i = 0; i < n; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

// One column of the current row as JSON. Text stays text here (UTF-8 damage is
// replaced when the document is dumped).
json column_value(sqlite3_stmt* s, int col) {
  switch (sqlite3_column_type(s, col)) {
    case SQLITE_INTEGER:
      return sqlite3_column_int64(s, col);
    case SQLITE_FLOAT:
      return sqlite3_column_double(s, col);
    case SQLITE_TEXT: {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, col));
      return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s, col)))
               : std::string();
    }
    case SQLITE_BLOB:
      return json{{"blob_hex", hex(sqlite3_column_blob(s, col), sqlite3_column_bytes(s, col))}};
    default:
      return nullptr;
  }
}

bool is_json_col(const TableSpec& spec, const std::string& col) {
  for (const char* c : spec.json_cols)
    if (col == c) return true;
  return false;
}

// The current row (columns start at `first`) as an object. JSON columns are
// parsed; one that does not parse stays text and is listed under "_damaged". So
// is any text with a NUL byte in it: the store never writes one (JSON escapes
// it), and it is what a page cut short by truncation reads as.
json row_json(const TableSpec& spec, sqlite3_stmt* s, int first, bool& damaged) {
  json row = json::object();
  json bad = json::array();
  for (std::size_t i = 0; i < spec.columns.size(); ++i) {
    const std::string col = spec.columns[i];
    json v = column_value(s, first + static_cast<int>(i));
    if (v.is_string() && v.get_ref<const std::string&>().find('\0') != std::string::npos) {
      bad.push_back(col);
    } else if (is_json_col(spec, col) && v.is_string()) {
      json parsed = json::parse(v.get<std::string>(), nullptr, false);
      // records.synced is exported paired, whichever form it was stored in.
      if (parsed.is_discarded() || (col == "synced" && !detail::expand_synced(parsed))) {
        bad.push_back(col);
      } else {
        v = std::move(parsed);
      }
    }
    row[col] = std::move(v);
  }
  damaged = !bad.empty();
  if (damaged) row["_damaged"] = std::move(bad);
  return row;
}

std::string select_list(const TableSpec& spec) {
  std::string cols;
  for (const char* c : spec.columns) {
    if (!cols.empty()) cols += ", ";
    cols += c;
  }
  return cols;
}

// ---- reading the copy ---------------------------------------------------------

// b - a for a <= b, without overflow.
std::uint64_t gap(std::int64_t a, std::int64_t b) {
  return static_cast<std::uint64_t>(b) - static_cast<std::uint64_t>(a);
}
// a + d, for d <= gap(a, kMaxKey).
std::int64_t advance(std::int64_t a, std::uint64_t d) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) + d);
}

class Reader {
 public:
  explicit Reader(sqlite3* db) : db_(db) {}

  // The first rowid >= x: a row, "none" (no row at or after x), or an error.
  enum class Seek { row, none, error };
  Seek seek(const TableSpec& spec, std::int64_t x, std::int64_t& found, std::string& error) {
    Stmt st;
    const std::string sql =
        std::string("SELECT rowid FROM ") + spec.name + " WHERE rowid >= ?1 ORDER BY rowid LIMIT 1";
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &st.s, nullptr);
    if (rc != SQLITE_OK) {
      error = errmsg(db_, rc);
      return Seek::error;
    }
    sqlite3_bind_int64(st.s, 1, x);
    rc = sqlite3_step(st.s);
    if (rc == SQLITE_ROW) {
      found = sqlite3_column_int64(st.s, 0);
      return Seek::row;
    }
    if (rc == SQLITE_DONE) return Seek::none;
    error = errmsg(db_, rc);
    return Seek::error;
  }

  // Reads a rowid table from the start, stepping over damage.
  void read_rowid_table(const TableSpec& spec, SalvageTable& t, json& rows) {
    const std::string sql = "SELECT rowid, " + select_list(spec) + " FROM " + spec.name +
                            " WHERE rowid >= ?1 ORDER BY rowid";
    std::int64_t next = 0;  // rowids of these tables start at 1
    bool clean = true;
    for (int resume = 0; resume < kMaxResumes; ++resume) {
      Stmt st;
      int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &st.s, nullptr);
      if (rc != SQLITE_OK) {
        t.errors.push_back(errmsg(db_, rc));
        t.unreadable.emplace_back(next, std::nullopt);
        t.complete = false;
        return;
      }
      t.found = true;
      sqlite3_bind_int64(st.s, 1, next);
      bool at_end = false;
      bool backwards = false;
      while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) {
        const std::int64_t key = sqlite3_column_int64(st.s, 0);
        if (key < next) {
          // Damaged pages can lead the scan back to rows already read (even in
          // a cycle): stop and step over, as for any other damage.
          backwards = true;
          break;
        }
        bool damaged = false;
        rows.push_back(row_json(spec, st.s, 1, damaged));
        ++t.rows;
        if (damaged) ++t.damaged_rows;
        if (key == kMaxKey) {
          at_end = true;
          break;
        }
        next = key + 1;
      }
      if (!backwards && (at_end || rc == SQLITE_DONE)) {
        t.complete = clean;
        return;
      }
      // Damage between `next - 1` and whatever follows.
      clean = false;
      t.errors.push_back(backwards ? "rows out of order after rowid " + std::to_string(next - 1) +
                                         ": the table's pages are damaged"
                                   : errmsg(db_, rc));
      if (!step_over(spec, t, rows, next)) return;
    }
    t.errors.push_back("gave up after " + std::to_string(kMaxResumes) + " damaged places");
    t.unreadable.emplace_back(next, std::nullopt);
  }

  // Reads a WITHOUT ROWID table until the end or the first error.
  void read_keyed_table(const TableSpec& spec, SalvageTable& t, json& rows) {
    const std::string sql = "SELECT " + select_list(spec) + " FROM " + spec.name;
    Stmt st;
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &st.s, nullptr);
    if (rc != SQLITE_OK) {
      t.errors.push_back(errmsg(db_, rc));
      return;
    }
    t.found = true;
    std::set<std::string> seen;  // primary keys read: damaged pages may lead back
    while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) {
      bool damaged = false;
      json row = row_json(spec, st.s, 0, damaged);
      json key = json::array();
      for (std::size_t i = 0; i < spec.key_columns; ++i) key.push_back(row[spec.columns[i]]);
      if (!seen.insert(key.dump(-1, ' ', false, json::error_handler_t::replace)).second) {
        t.errors.push_back(
            "a key was met twice: the table's pages are damaged; the rest was not read");
        return;
      }
      if (std::string(spec.name) == "settings" && row["key"].is_string() &&
          secret_setting(row["key"].get<std::string>()))
        continue;
      rows.push_back(std::move(row));
      ++t.rows;
      if (damaged) ++t.damaged_rows;
    }
    if (rc == SQLITE_DONE) {
      t.complete = true;
      return;
    }
    t.errors.push_back(errmsg(db_, rc) + "; the rest of this table was not read");
  }

 private:
  // Reading failed at or after `next`. Finds the first rowid >= next that a seek
  // reaches, records the range before it as unreadable, and sets `next` to it.
  // False when nothing after `next` can be reached (the rest is unreadable).
  bool step_over(const TableSpec& spec, SalvageTable& t, json& rows, std::int64_t& next) {
    std::string error;
    std::int64_t found = 0;
    const std::int64_t from = next;
    // A seek at `from` itself works: the tree leads to the next row, but reading
    // it (or stepping to it) failed. Read that row alone; if it cannot be read,
    // it is lost.
    Seek r = seek(spec, from, found, error);
    if (r == Seek::none) {
      // Nothing after the last row read: the failure was in stepping past it.
      t.unreadable.emplace_back(from, std::nullopt);
      return false;
    }
    if (r == Seek::row) {
      // The damage lies between `from` and that row: rows there may be lost (a
      // page cut short reads as cells of rowid 0, which the seek steps past).
      if (!read_one(spec, t, rows, found))
        t.unreadable.emplace_back(from, found);
      else if (found > from)
        t.unreadable.emplace_back(from, found - 1);
      if (found == kMaxKey) return false;
      next = found + 1;
      return true;
    }
    // Probe forward, doubling the step, for a place the tree leads to...
    std::int64_t bad = from;
    std::int64_t good = 0;
    std::uint64_t step = 1;
    for (;;) {
      if (gap(bad, kMaxKey) < step) {
        t.unreadable.emplace_back(from, std::nullopt);
        return false;
      }
      const std::int64_t x = advance(bad, step);
      r = seek(spec, x, found, error);
      if (r != Seek::error) {
        good = x;
        break;
      }
      bad = x;
      step *= 2;
    }
    // ...then back to the first such place after the last failing probe.
    while (gap(bad, good) > 1) {
      const std::int64_t mid = advance(bad, gap(bad, good) / 2);
      std::int64_t f = 0;
      const Seek m = seek(spec, mid, f, error);
      if (m == Seek::error) {
        bad = mid;
      } else {
        good = mid;
        r = m;
        found = f;
      }
    }
    t.unreadable.emplace_back(from, good - 1);
    if (r == Seek::none) return false;
    next = good;
    return true;
  }

  // Reads the row with rowid `key` alone; false when it cannot be read.
  bool read_one(const TableSpec& spec, SalvageTable& t, json& rows, std::int64_t key) {
    const std::string sql =
        "SELECT " + select_list(spec) + " FROM " + spec.name + " WHERE rowid = ?1";
    Stmt st;
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &st.s, nullptr);
    if (rc != SQLITE_OK) return false;
    sqlite3_bind_int64(st.s, 1, key);
    rc = sqlite3_step(st.s);
    if (rc != SQLITE_ROW) {
      t.errors.push_back("row " + std::to_string(key) + ": " + errmsg(db_, rc));
      return false;
    }
    bool damaged = false;
    rows.push_back(row_json(spec, st.s, 0, damaged));
    ++t.rows;
    if (damaged) ++t.damaged_rows;
    return true;
  }

  sqlite3* db_;
};

// ---- the copy and its header --------------------------------------------------

struct TempDir {
  std::string path;
  ~TempDir() {
    if (path.empty()) return;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

Result<void> copy_file(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) return Error(Errc::io, "cannot copy " + from + ": " + ec.message());
  return {};
}

void put_be(std::string& bytes, std::size_t at, std::uint32_t v, int width) {
  for (int i = width - 1; i >= 0; --i) {
    bytes[at + static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

// A plausible SQLite header for a fieldsync store with pages of `page_size`
// bytes: the in-header size is left invalid, so SQLite takes the file's size.
void write_header(std::string& bytes, std::uint32_t page_size, bool wal) {
  static const char magic[] = "SQLite format 3";
  std::memset(bytes.data(), 0, 100);
  std::memcpy(bytes.data(), magic, sizeof magic);  // with its NUL
  put_be(bytes, 16, page_size == 65536 ? 1 : page_size, 2);
  bytes[18] = bytes[19] = static_cast<char>(wal ? 2 : 1);
  bytes[20] = 0;
  bytes[21] = 64;
  bytes[22] = 32;
  bytes[23] = 32;
  put_be(bytes, 24, 1, 4);  // change counter (92 stays 0: size invalid)
  put_be(bytes, 40, 1, 4);  // schema cookie
  put_be(bytes, 44, 4, 4);  // schema format
  put_be(bytes, 56, 1, 4);  // UTF-8
  put_be(bytes, 60, 1, 4);  // user_version (schema 1)
  put_be(bytes, 96, SQLITE_VERSION_NUMBER, 4);
}

bool has_sqlite_magic(const std::string& bytes) {
  return bytes.size() >= 16 && std::memcmp(bytes.data(), "SQLite format 3", 16) == 0;
}

std::string read_all(const std::string& path, bool& ok) {
  std::ifstream in(path, std::ios::binary);
  ok = static_cast<bool>(in);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool write_all(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.flush();
  return static_cast<bool>(out);
}

struct Conn {
  sqlite3* db = nullptr;
  ~Conn() { sqlite3_close_v2(db); }
};

// Opens the copy and reads its schema. Returns the error text, empty when fine.
std::string open_copy(const std::string& copy, Conn& conn) {
  sqlite3_close_v2(conn.db);
  conn.db = nullptr;
  int rc = sqlite3_open_v2(copy.c_str(), &conn.db, SQLITE_OPEN_READWRITE, nullptr);
  if (rc != SQLITE_OK) return errmsg(conn.db, rc);
  sqlite3_extended_result_codes(conn.db, 1);
  // writable_schema lets SQLite read a file shorter than its header says (a
  // truncated store) instead of refusing it whole; nothing is written (a copy).
  sqlite3_exec(conn.db, "PRAGMA cell_size_check = ON; PRAGMA writable_schema = ON", nullptr,
               nullptr, nullptr);
  Stmt st;
  rc = sqlite3_prepare_v2(conn.db, "SELECT count(*) FROM sqlite_master", -1, &st.s, nullptr);
  if (rc != SQLITE_OK) return errmsg(conn.db, rc);
  rc = sqlite3_step(st.s);
  if (rc != SQLITE_ROW) return errmsg(conn.db, rc);
  return {};
}

// True when the schema of the open copy names an outbox table.
bool has_outbox(sqlite3* db) {
  Stmt st;
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'",
                         -1, &st.s, nullptr) != SQLITE_OK)
    return false;
  return sqlite3_step(st.s) == SQLITE_ROW;
}

std::string range_text(const std::pair<std::int64_t, std::optional<std::int64_t>>& r) {
  const std::string first = r.first == kMinKey ? "start" : std::to_string(r.first);
  return first + "-" + (r.second ? std::to_string(*r.second) : std::string("end"));
}

}  // namespace

json SalvageTable::to_json() const {
  json ranges = json::array();
  for (const auto& [first, last] : unreadable) {
    json f = first == kMinKey ? json(nullptr) : json(first);
    ranges.push_back(json::array({f, last ? json(*last) : json(nullptr)}));
  }
  return {{"found", found},       {"rows", rows},     {"damaged_rows", damaged_rows},
          {"unreadable", ranges}, {"errors", errors}, {"complete", complete}};
}

bool SalvageReport::complete() const {
  if (!opened || header_repaired || !errors.empty()) return false;
  for (const auto& t : tables)
    if (!t.complete || t.damaged_rows != 0) return false;
  return true;
}

const SalvageTable& SalvageReport::outbox() const {
  static const SalvageTable none = [] {
    SalvageTable t;
    t.name = "outbox";
    return t;
  }();
  for (const auto& t : tables)
    if (t.name == "outbox") return t;
  return none;
}

std::string SalvageReport::summary() const {
  std::string s;
  if (!opened) s += "the file could not be read as a database at all\n";
  if (header_repaired) s += "the file header was damaged and was rebuilt (on a copy)\n";
  for (const auto& e : errors) s += "error: " + e + "\n";
  for (const auto& t : tables) {
    s += t.name + ": " + std::to_string(t.rows) + " rows read";
    if (t.damaged_rows) s += ", " + std::to_string(t.damaged_rows) + " with damaged values";
    if (!t.found) {
      s += ", table not readable";
    } else if (!t.complete) {
      s += ", NOT complete";
    }
    if (!t.unreadable.empty()) {
      s += "; unreadable row keys:";
      for (const auto& r : t.unreadable) s += " " + range_text(r);
    }
    s += "\n";
  }
  s += complete() ? "everything was read\n" : "some data could not be read (see above)\n";
  return s;
}

json SalvageReport::summary_json() const {
  json t = json::object();
  for (const auto& table : tables) t[table.name] = table.to_json();
  return {{"complete", complete()},
          {"opened", opened},
          {"header_repaired", header_repaired},
          {"unsynced_changes", outbox().rows},
          {"tables", std::move(t)}};
}

Result<SalvageReport> salvage_store(const std::string& path) {
  try {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) return Error(Errc::not_found, "no store file at " + path);

    SalvageReport report;
    report.path = path;

    TempDir tmp;
    {
      std::string tmpl = (fs::temp_directory_path(ec) / "fieldsync-salvage-XXXXXX").string();
      if (ec) tmpl = "/tmp/fieldsync-salvage-XXXXXX";
      std::vector<char> buf(tmpl.begin(), tmpl.end());
      buf.push_back('\0');
      if (::mkdtemp(buf.data()) == nullptr)
        return Error(Errc::io,
                     "cannot make a temporary directory: " + std::string(std::strerror(errno)));
      tmp.path = buf.data();
    }
    const std::string copy = tmp.path + "/store.db";
    if (auto r = copy_file(path, copy); !r) return r.error();
    const bool wal = fs::is_regular_file(path + "-wal", ec);
    if (wal) {
      if (auto r = copy_file(path + "-wal", copy + "-wal"); !r) return r.error();
    }

    Conn conn;
    std::string failure = open_copy(copy, conn);
    if (!failure.empty()) {
      // A lost header: rebuild it on the copy, trying the usual page sizes.
      bool read_ok = false;
      std::string bytes = read_all(copy, read_ok);
      if (!read_ok) return Error(Errc::io, "cannot read the copy of " + path);
      if (bytes.size() >= 512 && !has_sqlite_magic(bytes)) {
        const std::string original = bytes;
        for (std::uint32_t page : {4096u, 1024u, 2048u, 8192u, 16384u, 32768u, 65536u, 512u}) {
          if (bytes.size() < page) continue;
          bytes = original;
          write_header(bytes, page, wal);
          sqlite3_close_v2(conn.db);
          conn.db = nullptr;
          if (!write_all(copy, bytes)) return Error(Errc::io, "cannot write the copy of " + path);
          if (wal) {
            // A WAL written for another header does not match it; try with it,
            // and the copy without it is still better than nothing.
            (void)copy_file(path + "-wal", copy + "-wal");
          }
          if (open_copy(copy, conn).empty() && has_outbox(conn.db)) {
            report.header_repaired = true;
            failure.clear();
            break;
          }
        }
      }
      if (!failure.empty()) report.errors.push_back("cannot read the file as SQLite: " + failure);
    }
    report.opened = failure.empty();

    json doc = json::object();
    doc["fieldsync_salvage"] = kExportFormat;
    doc["source"] = path;
    doc["salvaged_at"] = format_rfc3339_ms(system_now_ms());
    doc["header_repaired"] = report.header_repaired;

    Reader reader(conn.db);
    json summary = json::object();
    for (const auto& spec : table_specs()) {
      SalvageTable t;
      t.name = spec.name;
      json rows = json::array();
      if (report.opened) {
        if (spec.rowid) {
          reader.read_rowid_table(spec, t, rows);
        } else {
          reader.read_keyed_table(spec, t, rows);
        }
      } else {
        t.errors.push_back("the file could not be opened");
        t.unreadable.emplace_back(kMinKey, std::nullopt);
      }
      summary[spec.name] = t.to_json();
      doc[spec.export_key] = std::move(rows);
      report.tables.push_back(std::move(t));
    }
    // meta and settings as objects: easier to read.
    for (const char* key : {"meta", "settings"}) {
      json obj = json::object();
      for (const auto& row : doc[key])
        if (row.contains("key") && row["key"].is_string())
          obj[row["key"].get<std::string>()] = row.value("value", json());
      doc[key] = std::move(obj);
    }
    if (doc["meta"].contains("device_id")) doc["device_id"] = doc["meta"]["device_id"];
    doc["errors"] = report.errors;
    doc["summary"] = std::move(summary);
    doc["complete"] = report.complete();
    report.document = std::move(doc);
    return report;
  } catch (const std::bad_alloc&) {
    return Error(Errc::io, "out of memory while salvaging " + path);
  } catch (const std::exception& e) {
    return Error(Errc::internal, std::string("salvage: ") + e.what());
  }
}

Result<SalvageReport> salvage_store(const std::string& path, const std::string& out_path) {
  try {
    if (out_path.empty()) return Error(Errc::invalid_argument, "no output file given", "out");
    std::error_code ec;
    const fs::path out_abs = fs::weakly_canonical(out_path, ec);
    for (const std::string& p : {path, path + "-wal", path + "-shm", path + "-journal"}) {
      std::error_code ec2;
      if (out_path == p || (!ec && out_abs == fs::weakly_canonical(p, ec2) && !ec2))
        return Error(Errc::invalid_argument,
                     "the export must not overwrite the store or its files: " + out_path, "out");
    }
    if (fs::exists(out_path, ec))
      return Error(Errc::invalid_argument,
                   out_path + " exists already; choose a new file for the export", "out");
    auto report = salvage_store(path);
    if (!report) return report;
    const std::string text =
        report->document.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
    const std::string tmp = out_path + ".tmp";
    if (!write_all(tmp, text)) {
      fs::remove(tmp, ec);
      return Error(Errc::io, "cannot write " + tmp);
    }
    fs::rename(tmp, out_path, ec);
    if (ec) {
      std::error_code ec2;
      fs::remove(tmp, ec2);
      return Error(Errc::io, "cannot rename " + tmp + " to " + out_path + ": " + ec.message());
    }
    return report;
  } catch (const std::bad_alloc&) {
    return Error(Errc::io, "out of memory while salvaging " + path);
  } catch (const std::exception& e) {
    return Error(Errc::internal, std::string("salvage: ") + e.what());
  }
}

}  // namespace fieldsync
