// Files the store must refuse without touching them: a newer schema, a SQLite file
// of another program, garbage, a damaged store. And the schema of a fresh file.
#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "store_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;
using namespace fieldsync::store_tests;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

void raw_exec(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
  (void)msg;
}

}  // namespace

TEST_CASE("a fresh file gets the current schema", "[core][migrations]") {
  TempDir dir;
  SECTION("missing file") {
    auto s = open_store(dir.file("a.db"));
    CHECK(s->status()->schema_version == Store::kSchemaVersion);
  }
  SECTION("empty file") {
    write_file(dir.file("a.db"), "");
    auto s = open_store(dir.file("a.db"));
    CHECK(s->status()->schema_version == Store::kSchemaVersion);
    CHECK(s->import_form(survey_form()).ok());
  }
}

TEST_CASE("a store written by a newer schema is refused and left untouched",
          "[core][migrations][corrupt]") {
  TempDir dir;
  std::string path = dir.file("a.db");
  {
    auto s = open_with_form(path);
    REQUIRE(s->put(new_record({{"name", "x"}})).ok());
  }
  const std::string newer = "PRAGMA journal_mode = DELETE; PRAGMA user_version = " +
                            std::to_string(Store::kSchemaVersion + 1) + ";";
  raw_exec(path, newer.c_str());
  std::string before = read_file(path);
  REQUIRE_FALSE(before.empty());
  auto e = open_error(path);
  CHECK(e.code == Errc::schema_too_new);
  CHECK(e.message.find("newer") != std::string::npos);
  CHECK(read_file(path) == before);
  CHECK_FALSE(std::filesystem::exists(path + "-wal"));
}

TEST_CASE("a SQLite file of another program is refused", "[core][migrations][corrupt]") {
  TempDir dir;
  std::string path = dir.file("other.db");
  raw_exec(path, "CREATE TABLE people(name TEXT); INSERT INTO people VALUES('a');");
  std::string before = read_file(path);
  auto e = open_error(path);
  CHECK(e.code == Errc::corrupt);
  CHECK(e.message.find("not a fieldsync store") != std::string::npos);
  CHECK(read_file(path) == before);

  SECTION("even with a table called meta") {
    std::string p2 = dir.file("meta.db");
    raw_exec(p2, "CREATE TABLE meta(key TEXT, value TEXT); PRAGMA user_version = 1;");
    auto e2 = open_error(p2);
    CHECK(e2.code == Errc::corrupt);
    CHECK(e2.message.find("not a fieldsync store") != std::string::npos);
  }
}

TEST_CASE("a file that is not SQLite is refused", "[core][corrupt]") {
  TempDir dir;
  std::string path = dir.file("garbage.db");
  SECTION("random bytes") {
    std::mt19937 rng(7);
    std::string bytes(8192, '\0');
    for (auto& b : bytes) b = static_cast<char>(rng());
    write_file(path, bytes);
  }
  SECTION("a text file") {
    write_file(path, "these are survey notes, not a database\n");
  }
  std::string before = read_file(path);
  auto e = open_error(path);
  CHECK(e.code == Errc::corrupt);
  CHECK(e.message.find("not a SQLite database") != std::string::npos);
  CHECK(read_file(path) == before);
}

TEST_CASE("a damaged store is reported as corrupt", "[core][corrupt]") {
  TempDir dir;
  std::string path = dir.file("a.db");
  {
    auto s = open_with_form(path);
    std::vector<PutRequest> many;
    for (int i = 0; i < 400; ++i)
      many.push_back(new_record({{"name", "village " + std::to_string(i)},
                                 {"note", std::string(45, static_cast<char>('a' + i % 26))}}));
    REQUIRE(s->put_many(many).ok());
  }
  std::string bytes = read_file(path);
  const std::size_t page = 4096;
  REQUIRE(bytes.size() > 12 * page);
  // Scribble over whole b-tree pages, headers included (not the file header page).
  for (std::size_t p = 3; p < 12; p += 2)
    for (std::size_t i = 0; i < page; ++i) bytes[p * page + i] = static_cast<char>(0xA5);
  write_file(path, bytes);
  auto e = open_error(path);
  CHECK(e.code == Errc::corrupt);
}
