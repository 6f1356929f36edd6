// Server store migrations: a file written with an older schema opens with every
// record, field value and version intact.
#include <sqlite3.h>

#include <catch2/catch.hpp>

#include "sqlite_store.hpp"
#include "support/server_process.hpp"

using namespace fieldsync;
using namespace fieldsync::server;

namespace {

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  INFO((err ? err : ""));
  sqlite3_free(err);
  REQUIRE(rc == SQLITE_OK);
}

std::int64_t query_int(sqlite3* db, const char* sql) {
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  std::int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

}  // namespace

TEST_CASE("schema 1 to 2: per-field rows become the record's fields column",
          "[server][store][migration]") {
  testing::TempDir dir("fieldsync-migration");
  const std::string path = dir.file("server.db");
  const std::string a = "0193a1c2-0000-7000-8000-00000000000a";
  const std::string b = "0193a1c2-0000-7000-8000-00000000000b";
  {
    SqliteStoreOptions v1{path};
    v1.schema_version = 1;
    auto store = open_sqlite_store(v1);
    REQUIRE(store);
  }
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    REQUIRE(query_int(db, "PRAGMA user_version") == 1);
    const std::string sql =
        "INSERT INTO records(id, form, form_version, scope, deleted, version, deleted_seq, "
        "key_text) VALUES('" +
        a + "', 'kla-desa', 1, '14.03.01.2001', 0, 7, 0, NULL), ('" + b +
        "', 'kla-desa', 1, '14.03.01.2002', 1, 9, 9, NULL);"
        "INSERT INTO field_values(record, field, value, version) VALUES"
        "('" +
        a +
        "', 'count', '412', 3),"
        "('" +
        a +
        "', 'note', '\"kata \\\"kutip\\\" dan ü\"', 5),"
        "('" +
        a +
        "', 'flag', 'true', 6),"
        "('" +
        a +
        "', 'empty', 'null', 7),"
        "('" +
        a +
        "', 'ratio', '1.5', 2),"
        "('" +
        a + "', 'tags', '[\"a\",\"b\"]', 4);";
    exec(db, sql.c_str());
    sqlite3_close(db);
  }

  auto store = open_sqlite_store(SqliteStoreOptions{path});
  REQUIRE(store);
  auto rec = (*store)->record(a);
  REQUIRE(rec);
  REQUIRE(*rec);
  const auto& fields = (**rec).row.fields;
  REQUIRE(fields.size() == 6);
  CHECK(fields.at("count").value == 412);
  CHECK(fields.at("count").version == 3);
  CHECK(fields.at("note").value == "kata \"kutip\" dan ü");
  CHECK(fields.at("note").version == 5);
  CHECK(fields.at("flag").value == true);
  CHECK(fields.at("empty").value.is_null());
  CHECK(fields.at("empty").version == 7);
  CHECK(fields.at("ratio").value == 1.5);
  CHECK(fields.at("tags").value == json::array({"a", "b"}));
  CHECK((**rec).row.version == 7);

  auto gone = (*store)->record(b);
  REQUIRE(gone);
  REQUIRE(*gone);
  CHECK((**gone).row.deleted);
  CHECK((**gone).row.fields.empty());
  store->reset();

  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  CHECK(query_int(db, "PRAGMA user_version") == kServerSchemaVersion);
  CHECK(query_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'field_values'") == 0);
  sqlite3_close(db);
}
