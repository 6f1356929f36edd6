// Salvage of a damaged device store (fieldsync/salvage.hpp): a store holding
// synced records, receipts and unsynced changes is damaged on disk in several
// ways (garbage or zeros over pages, truncation, a lost header) and salvaged.
// Every time: no crash, the original file is not written to, every exported
// unsynced change is exactly what was saved, and every unsynced change that is not
// exported lies in a key range the report says it could not read - nothing is
// lost silently. Where the outbox's own pages are intact, all of it comes back.
#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>

#include "fieldsync/salvage.hpp"
#include "reference_server.hpp"
#include "store_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;
using namespace fieldsync::store_tests;

namespace {

constexpr std::size_t kPage = 4096;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// What the store held before it was damaged.
struct Original {
  std::map<std::int64_t, OutboxEntry> outbox;  // by counter
  std::size_t records = 0;
  std::size_t receipts = 0;
  std::string device_id;
};

// A store with 150 synced records (receipts), then 200 new records and 60 edits
// of synced ones left unsynced: the outbox spans many pages.
Original build_store(const std::string& path) {
  Original o;
  auto s = open_with_form(path);
  o.device_id = s->device_id();
  REQUIRE(s->set_setting("token", "secret-session-token").ok());
  REQUIRE(s->set_setting("user", "officer.bengkalis").ok());
  std::vector<PutRequest> synced;
  for (int i = 0; i < 150; ++i)
    synced.push_back(new_record({{"name", "synced " + std::to_string(i)},
                                 {"count", i},
                                 {"note", std::string(40, static_cast<char>('a' + i % 26))}}));
  auto ids = s->put_many(synced);
  REQUIRE(ids.ok());
  ReferenceServer server({survey_form()});
  for (;;) {
    auto batch = s->next_batch(100);
    REQUIRE(batch.ok());
    if (batch->empty()) break;
    auto cursor = s->cursor();
    REQUIRE(cursor.ok());
    const SyncResponse resp = server.sync(s->device_id(), *batch, *cursor, 500);
    REQUIRE(s->apply_sync(*batch, resp).ok());
  }
  std::vector<PutRequest> pending;
  for (int i = 0; i < 200; ++i)
    pending.push_back(new_record({{"name", "unsynced " + std::to_string(i)},
                                  {"count", 1000 + i},
                                  {"note", std::string(45, static_cast<char>('A' + i % 26))}}));
  REQUIRE(s->put_many(pending).ok());
  for (int i = 0; i < 60; ++i)
    REQUIRE(s->put(edit((*ids)[static_cast<std::size_t>(i)], {{"count", 5000 + i}})).ok());
  // Written last, so that the outbox's pages are not the end of the file: a long
  // setting on overflow pages.
  REQUIRE(s->set_setting("notes", std::string(5 * kPage, 'n')).ok());
  auto out = s->outbox();
  REQUIRE(out.ok());
  REQUIRE(out->size() == 260);
  for (auto& e : *out) o.outbox.emplace(e.counter, e);
  o.records = 350;
  auto receipts = s->receipts();
  REQUIRE(receipts.ok());
  o.receipts = receipts->size();
  REQUIRE(o.receipts == 150);
  s.reset();
  // Closed cleanly: everything is in the main file, which is what gets damaged.
  REQUIRE_FALSE(std::filesystem::exists(path + "-wal"));
  return o;
}

// Pages of each b-tree (dbstat), read before the damage.
std::map<std::string, std::vector<std::int64_t>> pages_by_table(const std::string& path,
                                                                const char* pagetype = nullptr) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  const int rc = sqlite3_prepare_v2(db, "SELECT name, pageno, pagetype FROM dbstat ORDER BY pageno",
                                    -1, &st, nullptr);
  INFO("this test needs SQLite's dbstat table: " << sqlite3_errmsg(db));
  REQUIRE(rc == SQLITE_OK);
  std::map<std::string, std::vector<std::int64_t>> out;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const std::string type = reinterpret_cast<const char*>(sqlite3_column_text(st, 2));
    if (pagetype && type != pagetype) continue;
    out[reinterpret_cast<const char*>(sqlite3_column_text(st, 0))].push_back(
        sqlite3_column_int64(st, 1));
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

// The one number `sql` counts in the file.
std::int64_t count_rows(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  const std::int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

void fill_page(std::string& bytes, std::int64_t pageno, char value) {
  const std::size_t at = static_cast<std::size_t>(pageno - 1) * kPage;
  REQUIRE(at + kPage <= bytes.size());
  std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(at),
            bytes.begin() + static_cast<std::ptrdiff_t>(at + kPage), value);
}

bool in_unreadable(const SalvageTable& t, std::int64_t key) {
  for (const auto& [first, last] : t.unreadable)
    if (key >= first && (!last || key <= *last)) return true;
  return false;
}

// The central promise: every exported unsynced change is exactly what was saved,
// but for the values it lists as damaged (a page cut short reads as NUL bytes);
// every one not exported is inside a range reported unreadable. Returns how many
// were exported.
std::size_t check_accounted(const SalvageReport& report, const Original& o) {
  const json& rows = report.document.at("unsynced_changes");
  REQUIRE(rows.is_array());
  CHECK(rows.size() == static_cast<std::size_t>(report.outbox().rows));
  std::set<std::int64_t> exported;
  for (const auto& row : rows) {
    INFO(row.dump());
    const std::int64_t counter = row.at("counter").get<std::int64_t>();
    auto it = o.outbox.find(counter);
    REQUIRE(it != o.outbox.end());  // nothing invented
    const Change& c = it->second.change;
    std::set<std::string> damaged;
    if (row.contains("_damaged"))
      for (const auto& col : row.at("_damaged")) damaged.insert(col.get<std::string>());
    auto check = [&](const char* col, const json& saved) {
      if (!damaged.count(col)) CHECK(row.at(col) == saved);
    };
    check("change_id", c.id);
    check("record", c.record);
    check("op", c.op);
    check("scope", c.scope);
    check("fields", c.fields);
    check("hlc", c.hlc);
    CHECK(exported.insert(counter).second);  // once
  }
  for (const auto& [counter, entry] : o.outbox) {
    if (exported.count(counter)) continue;
    INFO("unsynced change " << entry.change.id << " is neither exported nor reported unreadable");
    CHECK(in_unreadable(report.outbox(), counter));
  }
  return exported.size();
}

SalvageReport salvage(const std::string& path) {
  const std::string before = read_file(path);
  auto r = salvage_store(path);
  if (!r) FAIL("salvage failed: " << r.error().to_string());
  CHECK(read_file(path) == before);  // the damaged file is never written to
  return std::move(r).value();
}

}  // namespace

TEST_CASE("salvage of an intact store exports everything but the session token",
          "[core][salvage]") {
  TempDir dir;
  const std::string path = dir.file("a.db");
  const Original o = build_store(path);
  const SalvageReport r = salvage(path);
  CHECK(r.opened);
  CHECK_FALSE(r.header_repaired);
  CHECK(r.complete());
  CHECK(check_accounted(r, o) == o.outbox.size());
  CHECK(r.outbox().unreadable.empty());
  const json& doc = r.document;
  CHECK(doc.at("complete") == true);
  CHECK(doc.at("device_id") == o.device_id);
  CHECK(doc.at("records").size() == o.records);
  // The synced records are stored compact ({"": version, ...}) and exported as
  // the store reads them: every field [value, version].
  CHECK(count_rows(path, "SELECT count(*) FROM records WHERE synced LIKE '{\"\":%'") == 150);
  std::size_t pairs = 0;
  for (const auto& rec : doc.at("records")) {
    const json& synced = rec.at("synced");
    REQUIRE(synced.is_object());
    CHECK_FALSE(synced.contains(""));
    for (const auto& [name, pair] : synced.items()) {
      REQUIRE(pair.is_array());
      REQUIRE(pair.size() == 2);
      CHECK(pair[1] == rec.at("version"));
      ++pairs;
    }
  }
  CHECK(pairs == 150 * 3);
  CHECK(doc.at("receipts").size() == o.receipts);
  CHECK(doc.at("forms").size() == 1);
  CHECK(doc.at("settings").at("user") == "officer.bengkalis");
  CHECK_FALSE(doc.at("settings").contains("token"));
  CHECK(doc.dump().find("secret-session-token") == std::string::npos);
  CHECK(doc.at("summary").at("outbox").at("rows") == o.outbox.size());
  // The store still opens afterwards: salvage worked on a copy.
  CHECK(open_store(path)->outbox()->size() == o.outbox.size());
}

TEST_CASE("garbage over pages of other tables: every unsynced change is exported",
          "[core][salvage]") {
  TempDir dir;
  const std::string path = dir.file("a.db");
  const Original o = build_store(path);
  const auto pages = pages_by_table(path);
  std::string bytes = read_file(path);
  std::vector<std::int64_t> hit;
  for (const char* table :
       {"records", "receipts", "sqlite_autoindex_records_1", "outbox_by_record"}) {
    REQUIRE(pages.count(table));
    const auto& p = pages.at(table);
    // Every other page of the b-tree.
    for (std::size_t i = 0; i < p.size(); i += 2) hit.push_back(p[i]);
  }
  const char value = GENERATE(static_cast<char>(0xA5), '\0');
  for (auto pg : hit) fill_page(bytes, pg, value);
  write_file(path, bytes);

  const Error e = open_error(path);
  CHECK(e.code == Errc::corrupt);
  CHECK(e.message.find("damaged") != std::string::npos);
  CHECK(e.message.find("fieldsync-cli salvage --db " + path) != std::string::npos);

  const SalvageReport r = salvage(path);
  CHECK(r.opened);
  CHECK_FALSE(r.complete());
  CHECK(r.outbox().complete);
  CHECK(check_accounted(r, o) == o.outbox.size());
  for (const auto& t : r.tables) {
    if (t.name != "records" && t.name != "receipts") continue;
    INFO(t.name);
    CHECK_FALSE(t.complete);
    CHECK_FALSE(t.errors.empty());
    CHECK_FALSE(t.unreadable.empty());
    CHECK(r.document.at("summary").at(t.name).at("complete") == false);
  }
  CHECK(r.summary().find("NOT complete") != std::string::npos);
}

TEST_CASE("damage to outbox pages: the rest is exported and the lost keys reported",
          "[core][salvage]") {
  TempDir dir;
  const std::string path = dir.file("a.db");
  const Original o = build_store(path);
  const auto leaves = pages_by_table(path, "leaf");
  REQUIRE(leaves.count("outbox"));
  const auto& outbox_leaves = leaves.at("outbox");
  REQUIRE(outbox_leaves.size() >= 6);
  std::string bytes = read_file(path);
  SECTION("one leaf in the middle, garbage") {
    fill_page(bytes, outbox_leaves[outbox_leaves.size() / 2], static_cast<char>(0xA5));
  }
  SECTION("the first and the last leaf, zeros") {
    fill_page(bytes, outbox_leaves.front(), '\0');
    fill_page(bytes, outbox_leaves.back(), '\0');
  }
  SECTION("the second half of a leaf, zeros (a page cut short)") {
    // Its cells then read as rows of rowid 0 with no values; a seek past them
    // lands on a later row, and the keys between must be reported.
    const std::size_t at = static_cast<std::size_t>(outbox_leaves[3] - 1) * kPage + kPage / 2;
    std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(at),
              bytes.begin() + static_cast<std::ptrdiff_t>(at + kPage / 2), '\0');
  }
  SECTION("the header and cell pointers of a leaf, garbage") {
    const std::size_t at = static_cast<std::size_t>(outbox_leaves[2] - 1) * kPage;
    std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(at),
              bytes.begin() + static_cast<std::ptrdiff_t>(at + 64), static_cast<char>(0x5A));
  }
  write_file(path, bytes);
  CHECK(open_error(path).code == Errc::corrupt);

  const SalvageReport r = salvage(path);
  CHECK(r.opened);
  CHECK_FALSE(r.complete());
  const std::size_t got = check_accounted(r, o);
  CHECK(got < o.outbox.size());
  // A leaf holds far fewer than 100 of these changes: the rest came back.
  CHECK(got >= o.outbox.size() - 2 * 100);
  CHECK_FALSE(r.outbox().unreadable.empty());
  CHECK_FALSE(r.outbox().errors.empty());
  CHECK_FALSE(r.document.at("summary").at("outbox").at("unreadable").empty());
}

TEST_CASE("a truncated store: what is left is exported, the rest reported", "[core][salvage]") {
  TempDir dir;
  const std::string path = dir.file("a.db");
  const Original o = build_store(path);
  const auto pages = pages_by_table(path);
  const std::int64_t last_outbox_page =
      *std::max_element(pages.at("outbox").begin(), pages.at("outbox").end());
  std::string bytes = read_file(path);
  const std::size_t size = bytes.size();
  REQUIRE(size > 40 * kPage);

  struct Cut {
    const char* what;
    std::size_t at;
  };
  const Cut cut =
      GENERATE_COPY(Cut{"30%", size * 3 / 10}, Cut{"60%", size * 6 / 10},
                    Cut{"one page short", size - kPage}, Cut{"mid-page", size - kPage - 1000},
                    Cut{"after the outbox", static_cast<std::size_t>(last_outbox_page) * kPage},
                    Cut{"two pages", 2 * kPage});
  INFO("truncated at " << cut.what << " (" << cut.at << " of " << size << " bytes)");
  REQUIRE(cut.at < size);
  bytes.resize(cut.at);
  write_file(path, bytes);
  const bool outbox_intact = static_cast<std::int64_t>(cut.at / kPage) >= last_outbox_page;

  const Error e = open_error(path);
  CHECK(e.code == Errc::corrupt);
  CHECK(e.message.find("salvage") != std::string::npos);

  const SalvageReport r = salvage(path);
  INFO(r.summary());
  CHECK(r.opened);
  const std::size_t got = check_accounted(r, o);
  if (outbox_intact) {
    CHECK(got == o.outbox.size());
    CHECK(r.outbox().complete);
  }
  CHECK_FALSE(r.complete());
}

TEST_CASE("a store whose header was zeroed: the header is rebuilt and all is read",
          "[core][salvage]") {
  TempDir dir;
  const std::string path = dir.file("a.db");
  const Original o = build_store(path);
  std::string bytes = read_file(path);
  std::fill(bytes.begin(), bytes.begin() + 100, '\0');
  write_file(path, bytes);

  const Error e = open_error(path);
  CHECK(e.code == Errc::corrupt);
  CHECK(e.message.find("not a SQLite database") != std::string::npos);
  CHECK(e.message.find("fieldsync-cli salvage") != std::string::npos);

  const SalvageReport r = salvage(path);
  CHECK(r.opened);
  CHECK(r.header_repaired);
  CHECK_FALSE(r.complete());  // a rebuilt header is worth a look
  CHECK(check_accounted(r, o) == o.outbox.size());
  CHECK(r.document.at("records").size() == o.records);
  CHECK(r.document.at("device_id") == o.device_id);
  CHECK(r.document.at("header_repaired") == true);
}

TEST_CASE("a store that cannot be read at all gives a report, not a crash", "[core][salvage]") {
  TempDir dir;
  const std::string path = dir.file("a.db");
  const Original o = build_store(path);
  std::string bytes = read_file(path);
  SECTION("first page zeroed (the schema is gone)") {
    fill_page(bytes, 1, '\0');
  }
  SECTION("random bytes") {
    std::mt19937 rng(11);
    for (auto& b : bytes) b = static_cast<char>(rng());
  }
  SECTION("shorter than a header") {
    bytes.resize(60);
  }
  write_file(path, bytes);
  const SalvageReport r = salvage(path);
  CHECK_FALSE(r.opened);
  CHECK_FALSE(r.complete());
  CHECK_FALSE(r.errors.empty());
  CHECK(r.outbox().rows == 0);
  CHECK(check_accounted(r, o) == 0);  // all in the reported range
  CHECK(r.summary().find("could not be read as a database") != std::string::npos);
}

// Random bytes inside a page can also make rows that decode to wrong values (the
// file has no checksums), so this checks no crash and a well-formed report, and
// the full promise when the damage missed the outbox's pages.
TEST_CASE("random damage never crashes salvage", "[core][salvage]") {
  TempDir dir;
  const std::string clean = dir.file("clean.db");
  const Original o = build_store(clean);
  const std::string original = read_file(clean);
  const auto tables = pages_by_table(clean);
  const std::set<std::int64_t> outbox_pages(tables.at("outbox").begin(), tables.at("outbox").end());
  const std::size_t pages = original.size() / kPage;
  int missed_outbox = 0;
  for (unsigned seed = 1; seed <= 40; ++seed) {
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    std::string bytes = original;
    bool outbox_hit = false;
    const int hits = 1 + static_cast<int>(rng() % 6);
    for (int h = 0; h < hits; ++h) {
      const std::size_t page = 1 + rng() % (pages - 1);  // 0-based: page 2 and on
      const std::size_t at = page * kPage + rng() % kPage;
      const std::size_t len = std::min<std::size_t>(1 + rng() % kPage, bytes.size() - at);
      for (std::size_t i = 0; i < len; ++i) bytes[at + i] = static_cast<char>(rng());
      // SQLite numbers pages from 1; the damage may run into the next page.
      for (std::size_t b : {at, at + len - 1})
        if (outbox_pages.count(static_cast<std::int64_t>(b / kPage + 1))) outbox_hit = true;
    }
    const std::string path = dir.file("r" + std::to_string(seed) + ".db");
    write_file(path, bytes);
    const SalvageReport r = salvage(path);
    INFO(r.summary());
    CHECK(r.opened);
    CHECK_NOTHROW(r.document.dump(-1, ' ', false, json::error_handler_t::replace));
    CHECK(r.document.at("unsynced_changes").size() == static_cast<std::size_t>(r.outbox().rows));
    // Damaged pages can lead a scan back to rows already read, even in a cycle
    // (seed 9 did, 4 million times): each row is read once.
    CHECK(r.document.at("unsynced_changes").size() <= o.outbox.size() + 100);
    CHECK(r.document.at("records").size() <= o.records + 100);
    CHECK(r.document.at("receipts").size() <= o.receipts + 100);
    if (!outbox_hit) {
      ++missed_outbox;
      CHECK(check_accounted(r, o) == o.outbox.size());
    }
  }
  CHECK(missed_outbox > 0);
}

TEST_CASE("salvage reads the saves still in the WAL of a store in use", "[core][salvage]") {
  TempDir dir;
  const std::string path = dir.file("a.db");
  auto s = open_with_form(path);
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i)
    ids.push_back(*s->put(new_record({{"name", "in wal " + std::to_string(i)}})));
  REQUIRE(std::filesystem::exists(path + "-wal"));
  const SalvageReport r = salvage(path);
  CHECK(r.complete());
  const json& rows = r.document.at("unsynced_changes");
  REQUIRE(rows.size() == 5);
  for (std::size_t i = 0; i < 5; ++i) CHECK(rows[i].at("record") == ids[i]);
  // The store in use is unaffected.
  CHECK(s->put(new_record({{"name", "after"}})).ok());
  CHECK(s->outbox()->size() == 6);
}

TEST_CASE("the salvage export file", "[core][salvage]") {
  TempDir dir;
  const std::string path = dir.file("a.db");
  const Original o = build_store(path);
  std::string bytes = read_file(path);
  const auto pages = pages_by_table(path);
  fill_page(bytes, pages.at("records").front(), static_cast<char>(0xA5));
  write_file(path, bytes);

  const std::string out = dir.file("export.json");
  auto r = salvage_store(path, out);
  REQUIRE(r.ok());
  const json doc = json::parse(read_file(out));
  CHECK(doc.at("fieldsync_salvage") == 1);
  CHECK(doc.at("source") == path);
  CHECK(doc.at("complete") == false);
  CHECK(doc.at("unsynced_changes").size() == o.outbox.size());
  CHECK(doc.at("summary").at("records").at("complete") == false);
  CHECK_FALSE(std::filesystem::exists(out + ".tmp"));

  SECTION("an existing export is not overwritten") {
    auto again = salvage_store(path, out);
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().code == Errc::invalid_argument);
    CHECK(json::parse(read_file(out)) == doc);
  }
  SECTION("nor the store itself") {
    const std::string before = read_file(path);
    for (const std::string& target : {path, path + "-wal"}) {
      auto bad = salvage_store(path, target);
      REQUIRE_FALSE(bad.ok());
      CHECK(bad.error().code == Errc::invalid_argument);
    }
    CHECK(read_file(path) == before);
  }
  SECTION("a missing store") {
    auto missing = salvage_store(dir.file("none.db"), dir.file("x.json"));
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code == Errc::not_found);
    CHECK_FALSE(std::filesystem::exists(dir.file("x.json")));
  }
}
