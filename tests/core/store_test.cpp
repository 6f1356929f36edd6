// Device store basics: opening, forms, saving, reading, deleting, the outbox and
// its coalescing and batching rules, settings and status.
#include <sqlite3.h>

#include <filesystem>
#include <set>
#include <thread>

#include "fieldsync/ids.hpp"
#include "store_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;
using namespace fieldsync::store_tests;

TEST_CASE("a new store gets a device id that survives reopening", "[core][store]") {
  TempDir dir;
  std::string id;
  {
    auto s = open_store(dir.file("a.db"));
    id = s->device_id();
    CHECK(is_uuid(id));
    CHECK(id[14] == '4');  // UUIDv4
    auto st = s->status();
    REQUIRE(st.ok());
    CHECK(st->schema_version == Store::kSchemaVersion);
    CHECK(st->device_id == id);
  }
  auto s = open_store(dir.file("a.db"));
  CHECK(s->device_id() == id);
  auto other = open_store(dir.file("b.db"));
  CHECK(other->device_id() != id);
}

TEST_CASE("opening a missing file without create fails with not_found", "[core][store]") {
  TempDir dir;
  StoreOptions o;
  o.path = dir.file("missing.db");
  o.create = false;
  auto s = Store::open(o);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == Errc::not_found);
  CHECK_FALSE(std::filesystem::exists(o.path));
}

TEST_CASE("forms are imported once per version and the latest is used", "[core][store][forms]") {
  TempDir dir;
  auto s = open_store(dir.file("a.db"));
  REQUIRE(s->import_form(survey_form(1)).ok());

  SECTION("same definition again is a no-op") {
    CHECK(s->import_form(survey_form(1)).ok());
  }
  SECTION("different definition under the same version is refused") {
    Form changed = survey_form(1);
    changed.title = "Something else";
    auto r = s->import_form(changed);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
    CHECK(s->form("survey", 1)->title == "Test survey");
  }
  SECTION("a form without a version is refused") {
    auto r = s->import_form(survey_form(0));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
  }
  SECTION("latest version wins") {
    Form v2 = survey_form(2);
    v2.title = "v2";
    REQUIRE(s->import_form(v2).ok());
    auto all = s->forms();
    REQUIRE(all.ok());
    REQUIRE(all->size() == 1);
    CHECK(all->front().version == 2);
    CHECK(s->form("survey")->title == "v2");
    CHECK(s->form("survey", 1)->title == "Test survey");
    auto id = s->put(new_record({{"name", "x"}}));
    REQUIRE(id.ok());
    CHECK(s->get(*id)->form_version == 2);
  }
  SECTION("unknown forms") {
    CHECK(s->form("nope").error().code == Errc::unknown_form);
    auto r = s->put(PutRequest{"nope", "14.03", "", {{"a", 1}}, {}});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unknown_form);
  }
}

TEST_CASE("put creates a record and one outbox change", "[core][store][outbox]") {
  TempDir dir;
  auto s = open_with_form(dir.file("a.db"));
  auto id = s->put(new_record({{"name", "Bantan Air"}, {"count", 12}, {"tags", {"a", "c"}}}));
  REQUIRE(id.ok());
  CHECK(is_uuid(*id));
  CHECK((*id)[14] == '7');  // UUIDv7

  auto rec = s->get(*id);
  REQUIRE(rec.ok());
  CHECK(rec->form == "survey");
  CHECK(rec->form_version == 1);
  CHECK(rec->scope == "14.03.01.2001");
  CHECK_FALSE(rec->deleted);
  CHECK(rec->dirty);
  CHECK(rec->version == 0);
  REQUIRE(rec->fields.size() == 3);
  CHECK(rec->fields.at("count").value == 12);
  CHECK(rec->fields.at("count").dirty);
  CHECK(rec->fields.at("count").version == 0);
  CHECK(rec->fields.at("tags").value == json({"a", "c"}));

  auto out = s->outbox();
  REQUIRE(out.ok());
  REQUIRE(out->size() == 1);
  const Change& c = out->front().change;
  CHECK(c.id == s->device_id() + ":1");
  CHECK(c.record == *id);
  CHECK(c.op == "upsert");
  CHECK(c.form == "survey");
  CHECK(c.form_version == 1);
  CHECK(c.scope == "14.03.01.2001");
  CHECK(c.fields == json({{"name", "Bantan Air"}, {"count", 12}, {"tags", {"a", "c"}}}));
  // Zero bases are left out ("0 or absent: never seen"); "" is always there.
  CHECK(c.base == VersionMap{{"", 0}});
  CHECK(c.to_json()["base"] == json{{"", 0}});
  CHECK(Hlc::parse(c.hlc).ok());
  CHECK_FALSE(out->front().attempted);
  CHECK(parse_rfc3339_ms(out->front().created_at).ok());
  auto decoded = decode_change(c.to_json());
  REQUIRE(decoded.ok());
  CHECK(*decoded == c);
}

TEST_CASE("changes sent before schema 2 are resent with every zero base, as first sent",
          "[core][store][outbox]") {
  TempDir dir;
  const auto path = dir.file("a.db");
  std::string sent_id, unsent_id;
  {
    auto s = open_with_form(path);
    REQUIRE(s->put(new_record({{"name", "sent"}, {"count", 1}})).ok());
    REQUIRE(s->put(new_record({{"name", "not sent"}})).ok());
    auto batch = s->next_batch(1);  // the first goes out (attempted); its answer is lost
    REQUIRE(batch->size() == 1);
    sent_id = batch->front().id;
    unsent_id = s->outbox()->at(1).change.id;
  }
  {
    // The file as schema 1 left it: the same tables, no zero_bases_through.
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db,
                         "DELETE FROM meta WHERE key = 'zero_bases_through'; "
                         "PRAGMA user_version = 1;",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  auto s = open_with_form(path);
  CHECK(s->status()->schema_version == Store::kSchemaVersion);
  REQUIRE(s->put(new_record({{"name", "after"}})).ok());
  auto out = s->outbox();
  REQUIRE(out->size() == 3);
  // Sent under schema 1: as it went out then, so an older server sees the same text.
  CHECK(out->at(0).change.id == sent_id);
  CHECK(out->at(0).change.base == VersionMap{{"", 0}, {"count", 0}, {"name", 0}});
  // Not sent yet, or saved after: without zeros.
  CHECK(out->at(1).change.id == unsent_id);
  CHECK(out->at(1).change.base == VersionMap{{"", 0}});
  CHECK(out->at(2).change.base == VersionMap{{"", 0}});
  auto again = s->next_batch(10);
  REQUIRE(again->size() == 3);
  CHECK(again->at(0).base == VersionMap{{"", 0}, {"count", 0}, {"name", 0}});
  CHECK(again->at(1).base == VersionMap{{"", 0}});

  // A store created at schema 2 sends every change without zeros.
  TempDir fresh_dir;
  auto fresh = open_with_form(fresh_dir.file("b.db"));
  REQUIRE(fresh->put(new_record({{"name", "x"}})).ok());
  REQUIRE(fresh->next_batch(1)->size() == 1);
  CHECK(fresh->outbox()->at(0).change.base == VersionMap{{"", 0}});
}

TEST_CASE("put validates against the form and changes nothing on error", "[core][store]") {
  TempDir dir;
  auto s = open_with_form(dir.file("a.db"));
  auto expect_error = [&](const PutRequest& p, Errc code, const std::string& field) {
    auto r = s->put(p);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == code);
    CHECK(r.error().field == field);
  };
  expect_error(new_record({{"count", 1}}), Errc::validation, "name");  // required
  expect_error(new_record({{"name", "x"}, {"count", -1}}), Errc::validation, "count");
  expect_error(new_record({{"name", "x"}, {"bogus", 1}}), Errc::validation, "bogus");
  expect_error(new_record({{"name", "x"}}, "14.03.x"), Errc::validation, "scope");
  expect_error(new_record({{"name", "x"}}, ""), Errc::validation, "scope");
  expect_error(PutRequest{"", "14.03", "", {{"name", "x"}}, {}}, Errc::validation, "form");
  expect_error(PutRequest{"survey", "14.03", "not-a-uuid", {{"name", "x"}}, {}},
               Errc::invalid_argument, "record");
  CHECK(s->outbox()->empty());
  CHECK(s->list({})->empty());

  auto id = s->put(new_record({{"name", "x"}}));
  REQUIRE(id.ok());
  SECTION("form and scope are fixed at creation") {
    auto p = edit(*id, {{"count", 1}});
    p.scope = "14.03.02";
    expect_error(p, Errc::validation, "scope");
    p.scope.clear();
    p.form = "other";
    expect_error(p, Errc::validation, "form");
  }
  SECTION("a required field cannot be cleared") {
    expect_error(edit(*id, {{"name", nullptr}}), Errc::validation, "name");
  }
  SECTION("put_many is all or nothing") {
    auto r = s->put_many({new_record({{"name", "a"}}), new_record({{"name", "b"}, {"count", -5}})});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().field == "count");
    CHECK(s->list({})->size() == 1);
    CHECK(s->outbox()->size() == 1);
  }
  CHECK(s->outbox()->size() == 1);
}

TEST_CASE("unsent saves of one record coalesce into one change", "[core][store][outbox]") {
  TempDir dir;
  auto s = open_with_form(dir.file("a.db"));
  auto id = s->put(new_record({{"name", "x"}, {"count", 1}}));
  REQUIRE(id.ok());
  auto first_hlc = s->outbox()->front().change.hlc;
  REQUIRE(s->put(edit(*id, {{"count", 2}, {"ok", true}})).ok());
  REQUIRE(s->put(edit(*id, {{"note", "n"}})).ok());

  auto out = s->outbox();
  REQUIRE(out->size() == 1);
  const Change& c = out->front().change;
  CHECK(c.id == s->device_id() + ":1");
  CHECK(c.fields == json({{"name", "x"}, {"count", 2}, {"ok", true}, {"note", "n"}}));
  CHECK(c.base == VersionMap{{"", 0}});
  CHECK(*Hlc::parse(c.hlc) > *Hlc::parse(first_hlc));
  CHECK(s->get(*id)->fields.at("count").value == 2);

  SECTION("once attempted, a change is never merged into again") {
    auto batch = s->next_batch(10);
    REQUIRE(batch->size() == 1);
    REQUIRE(s->put(edit(*id, {{"count", 3}})).ok());
    out = s->outbox();
    REQUIRE(out->size() == 2);
    CHECK(out->at(0).change == batch->front());
    CHECK(out->at(0).attempted);
    CHECK(out->at(1).change.id == s->device_id() + ":2");
    CHECK(out->at(1).change.fields == json({{"count", 3}}));
    CHECK_FALSE(out->at(1).attempted);
    CHECK(s->get(*id)->fields.at("count").value == 3);
    // The next save merges into the new, unsent change.
    REQUIRE(s->put(edit(*id, {{"ok", false}})).ok());
    CHECK(s->outbox()->size() == 2);
  }
}

TEST_CASE("counters strictly increase and are never reused", "[core][store][outbox]") {
  TempDir dir;
  std::string path = dir.file("a.db");
  for (int round = 0; round < 3; ++round) {
    auto s = open_with_form(path);
    for (int i = 0; i < 5; ++i) {
      auto id = s->put(new_record({{"name", "r" + std::to_string(i)}}));
      REQUIRE(id.ok());
      if (i % 2 == 0) REQUIRE(s->remove(*id).ok());  // never sent: its change is dropped
    }
  }
  auto s = open_store(path);
  auto out = s->outbox();
  std::vector<std::int64_t> counters;
  for (const auto& e : *out) {
    counters.push_back(e.counter);
    CHECK(e.change.id == s->device_id() + ":" + std::to_string(e.counter));
  }
  // Round r saved counters 5r+1..5r+5 and dropped the 1st, 3rd and 5th.
  CHECK(counters == std::vector<std::int64_t>{2, 4, 7, 9, 12, 14});
  // Counter 15 was dropped with its record; it is not handed out again.
  auto id = s->put(new_record({{"name", "again"}}));
  REQUIRE(id.ok());
  CHECK(s->outbox()->back().counter == 16);
}

TEST_CASE("next_batch takes a prefix and stops before a record's second change",
          "[core][store][outbox]") {
  TempDir dir;
  auto s = open_with_form(dir.file("a.db"));
  auto a = *s->put(new_record({{"name", "a"}}));
  auto b = *s->put(new_record({{"name", "b"}}));
  REQUIRE(s->next_batch(1)->size() == 1);         // a's change is now attempted
  REQUIRE(s->put(edit(a, {{"count", 1}})).ok());  // a second change of a
  auto c = *s->put(new_record({{"name", "c"}}));

  auto out = s->outbox();
  REQUIRE(out->size() == 4);  // a1 b1 a2 c1

  SECTION("stops at the second change of a") {
    auto batch = s->next_batch(10);
    REQUIRE(batch->size() == 2);
    CHECK(batch->at(0).record == a);
    CHECK(batch->at(1).record == b);
    auto after = s->outbox();
    for (const auto& e : *after) CHECK(e.attempted == (e.change.record != c && e.counter != 3));
  }
  SECTION("respects max") {
    auto batch = s->next_batch(1);
    REQUIRE(batch->size() == 1);
    CHECK(batch->at(0).record == a);
    CHECK_FALSE(s->outbox()->at(1).attempted);
  }
  SECTION("max below 1 is refused") {
    CHECK(s->next_batch(0).error().code == Errc::invalid_argument);
  }
  SECTION("attempted marks survive reopening") {
    REQUIRE(s->next_batch(10)->size() == 2);
    s.reset();
    auto again = open_store(dir.file("a.db"));
    auto o = again->outbox();
    CHECK(o->at(0).attempted);
    CHECK(o->at(1).attempted);
    CHECK_FALSE(o->at(2).attempted);
  }
}

TEST_CASE("remove deletes visibly and queues a delete change", "[core][store]") {
  TempDir dir;
  auto s = open_with_form(dir.file("a.db"));

  SECTION("a record never sent: its changes are dropped, a local tombstone stays") {
    auto id = *s->put(new_record({{"name", "x"}}));
    REQUIRE(s->remove(id).ok());
    CHECK(s->outbox()->empty());
    auto rec = s->get(id);
    REQUIRE(rec.ok());
    CHECK(rec->deleted);
    CHECK(rec->fields.empty());
    CHECK(s->list({})->empty());
    CHECK(s->list(RecordQuery{"", "", true, -1})->size() == 1);
    CHECK(s->remove(id).error().code == Errc::deleted);
    CHECK(s->put(edit(id, {{"count", 1}})).error().code == Errc::deleted);
  }
  SECTION("a record whose create was sent: a delete change with the record's version") {
    auto id = *s->put(new_record({{"name", "x"}}));
    REQUIRE(s->next_batch(5)->size() == 1);
    REQUIRE(s->remove(id).ok());
    auto out = s->outbox();
    REQUIRE(out->size() == 2);
    const Change& d = out->at(1).change;
    CHECK(d.op == "delete");
    CHECK(d.fields.empty());
    CHECK(d.base == VersionMap{{"", 0}});
    CHECK(d.form == "survey");
    CHECK(d.scope == "14.03.01.2001");
    CHECK(s->get(id)->deleted);
    auto decoded = decode_change(d.to_json());
    REQUIRE(decoded.ok());
    CHECK(*decoded == d);
  }
  SECTION("unknown record") {
    CHECK(s->remove(new_uuid_v7()).error().code == Errc::not_found);
  }
}

TEST_CASE("list filters by form, scope prefix and deletion", "[core][store]") {
  TempDir dir;
  auto s = open_with_form(dir.file("a.db"));
  Form other = survey_form(1);
  other.id = "other";
  REQUIRE(s->import_form(other).ok());
  auto a = *s->put(new_record({{"name", "a"}}, "14.03.01.2001"));
  auto b = *s->put(new_record({{"name", "b"}}, "14.03.010.2001"));
  auto c = *s->put(new_record({{"name", "c"}}, "14.03.02"));
  PutRequest o = new_record({{"name", "o"}}, "14.03.01");
  o.form = "other";
  auto d = *s->put(o);
  REQUIRE(s->remove(c).ok());

  auto ids = [&](const RecordQuery& q) {
    std::set<std::string> out;
    auto rows = s->list(q);
    for (const auto& r : *rows) out.insert(r.id);
    return out;
  };
  CHECK(ids({}) == std::set<std::string>{a, b, d});
  CHECK(ids({"survey", "", false, -1}) == std::set<std::string>{a, b});
  CHECK(ids({"", "14.03.01", false, -1}) == std::set<std::string>{a, d});
  CHECK(ids({"", "14.03", true, -1}) == std::set<std::string>{a, b, c, d});
  CHECK(s->list({"", "", false, 2})->size() == 2);
  auto j = s->get(a)->to_json();
  CHECK(j["fields"]["name"]["value"] == "a");
  CHECK(j["fields"]["name"]["dirty"] == true);
  CHECK(j["deleted"] == false);
}

TEST_CASE("settings and status", "[core][store]") {
  TempDir dir;
  auto s = open_with_form(dir.file("a.db"));
  CHECK_FALSE(s->setting("token")->has_value());
  REQUIRE(s->set_setting("token", "t1").ok());
  REQUIRE(s->set_setting("token", "t2").ok());
  REQUIRE(s->set_setting("server_url", "http://x").ok());
  REQUIRE(s->set_setting("user", "officer.bantan").ok());
  CHECK(s->setting("token")->value() == "t2");
  CHECK(s->set_setting("", "x").error().code == Errc::invalid_argument);

  auto a = *s->put(new_record({{"name", "a"}}));
  auto b = *s->put(new_record({{"name", "b"}}));
  REQUIRE(s->remove(b).ok());
  auto st = s->status();
  REQUIRE(st.ok());
  CHECK(st->records == 1);
  CHECK(st->deleted == 1);
  CHECK(st->pending == 1);
  CHECK(st->rejected == 0);
  CHECK(st->under_review == 0);
  CHECK(st->cursor == 0);
  CHECK(st->server_url == "http://x");
  CHECK(st->user == "officer.bantan");
  CHECK(st->to_json()["records"] == 1);
  (void)a;
}

TEST_CASE("two Store objects on one file see each other's writes", "[core][store]") {
  TempDir dir;
  auto s1 = open_with_form(dir.file("a.db"));
  auto s2 = open_store(dir.file("a.db"));
  auto a = *s1->put(new_record({{"name", "a"}}));
  auto b = s2->put(new_record({{"name", "b"}}));
  REQUIRE(b.ok());
  REQUIRE(s1->put(new_record({{"name", "c"}})).ok());
  auto out = s1->outbox();
  REQUIRE(out->size() == 3);
  CHECK(out->at(0).counter == 1);
  CHECK(out->at(1).counter == 2);
  CHECK(out->at(2).counter == 3);
  CHECK(*Hlc::parse(out->at(1).change.hlc) > *Hlc::parse(out->at(0).change.hlc));
  CHECK(*Hlc::parse(out->at(2).change.hlc) > *Hlc::parse(out->at(1).change.hlc));
  CHECK(s2->get(a).ok());
}

TEST_CASE("the WAL is copied into the store file in the background, and closing waits for it",
          "[core][store]") {
  // Commits do not checkpoint themselves below 4000 WAL pages: past 1000 a thread
  // with its own connection copies the pages into the database file.
  TempDir dir;
  const std::string path = dir.file("a.db");
  auto s = open_with_form(path);
  const auto small = std::filesystem::file_size(path);
  std::vector<std::string> ids;
  for (int i = 0; i < 600; ++i) {  // a commit each: ~1500 WAL pages
    auto id =
        s->put(new_record({{"name", "r" + std::to_string(i)}, {"note", std::string(45, 'n')}}));
    REQUIRE(id.ok());
    ids.push_back(*id);
  }
  // The file takes the pages while the store stays open and idle.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::filesystem::file_size(path) < small + 64 * 1024 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(std::filesystem::file_size(path) >= small + 64 * 1024);
  // Closing while writes keep asking for checkpoints: nothing is lost.
  for (int i = 0; i < 300; ++i)
    REQUIRE(s->put(edit(ids[static_cast<std::size_t>(i)], {{"count", i}})).ok());
  s.reset();
  auto again = open_store(path);
  auto records = again->list({});
  REQUIRE(records.ok());
  CHECK(records->size() == 600);
  CHECK(again->get(ids[299])->fields.at("count").value == 299);
}
