// Applying a sync round trip (Store::apply_sync): each result status, rebasing of
// later changes, pulled entries, review marks, the cursor, and malformed answers.
#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "fieldsync/ids.hpp"
#include "store_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;
using namespace fieldsync::store_tests;

namespace {

ChangeResult result(const Change& c, std::string status, std::int64_t seq, VersionMap versions = {},
                    std::vector<ConflictRef> conflicts = {}) {
  ChangeResult r;
  r.id = c.id;
  r.status = std::move(status);
  r.seq = seq;
  if (versions.empty() && r.status == "applied")
    for (const auto& [k, v] : c.fields.items()) versions[k] = seq;
  r.versions = std::move(versions);
  r.conflicts = std::move(conflicts);
  return r;
}

ChangeResult rejection(const Change& c, std::string code, std::string field = {}) {
  ChangeResult r;
  r.id = c.id;
  r.status = "rejected";
  r.error = RejectReason{std::move(code), "refused", std::move(field)};
  return r;
}

LogEntry entry(std::int64_t seq, const std::string& record, std::string op,
               json fields = json::object(), std::vector<ConflictRef> conflicts = {}) {
  LogEntry e;
  e.seq = seq;
  e.record = record;
  e.form = "survey";
  e.form_version = 1;
  e.scope = "14.03.01.2001";
  e.op = std::move(op);
  e.fields = std::move(fields);
  e.origin = "other-device:" + std::to_string(seq);
  e.hlc = "2026-11-28T09:14:03.120Z/0003";
  e.conflicts = std::move(conflicts);
  return e;
}

SyncResponse response(std::vector<ChangeResult> results, std::vector<LogEntry> entries = {},
                      std::int64_t cursor = 0) {
  SyncResponse r;
  r.results = std::move(results);
  r.changes = std::move(entries);
  r.cursor = cursor;
  return r;
}

// A store with one synced record (name="x" v10, count=1 v10; record version 10).
struct Synced {
  TempDir dir;
  std::unique_ptr<Store> s = open_with_form(dir.file("a.db"));
  std::string id;
  Synced() {
    id = *s->put(new_record({{"name", "x"}, {"count", 1}}));
    auto batch = *s->next_batch(10);
    REQUIRE(s->apply_sync(batch, response({result(batch[0], "applied", 10)}, {}, 10)).ok());
  }
  Change push_one() {
    auto batch = *s->next_batch(10);
    REQUIRE(batch.size() == 1);
    return batch[0];
  }
};

}  // namespace

TEST_CASE("applied: the change leaves the outbox and its values become synced", "[core][apply]") {
  Synced t;
  auto rec = t.s->get(t.id);
  REQUIRE(rec.ok());
  CHECK_FALSE(rec->dirty);
  CHECK(rec->version == 10);
  CHECK(rec->fields.at("name").value == "x");
  CHECK(rec->fields.at("name").version == 10);
  CHECK_FALSE(rec->fields.at("name").dirty);
  CHECK(t.s->outbox()->empty());
  auto receipts = t.s->receipts();
  REQUIRE(receipts->size() == 1);
  CHECK(receipts->at(0).status == "applied");
  CHECK(receipts->at(0).seq == 10);
  CHECK(receipts->at(0).record == t.id);
  CHECK(*t.s->cursor() == 10);

  SECTION("the next edit carries the synced versions as its base") {
    REQUIRE(t.s->put(edit(t.id, {{"count", 2}, {"ok", true}})).ok());
    auto c = t.s->outbox()->at(0).change;
    CHECK(c.base == VersionMap{{"", 10}, {"count", 10}});
  }
  SECTION("a version below seq (value was already equal) is taken as given") {
    REQUIRE(t.s->put(edit(t.id, {{"count", 1}, {"ok", true}})).ok());
    auto c = t.push_one();
    REQUIRE(t.s->apply_sync({c}, response({result(c, "applied", 12, {{"count", 10}, {"ok", 12}})}))
                .ok());
    auto r = t.s->get(t.id);
    CHECK(r->fields.at("count").version == 10);
    CHECK(r->fields.at("ok").version == 12);
    CHECK(r->version == 12);
  }
}

TEST_CASE("a result that leaves out versions equal to its seq is read as seq (addition E)",
          "[core][apply]") {
  Synced t;
  REQUIRE(t.s->put(edit(t.id, {{"count", 1}, {"ok", true}, {"note", "n"}})).ok());
  auto c = t.push_one();
  // count was equal already (version 10); ok and note are left out: they are 12.
  REQUIRE(t.s->apply_sync({c}, response({result(c, "applied", 12, {{"count", 10}})})).ok());
  auto r = t.s->get(t.id);
  CHECK(r->fields.at("count").version == 10);
  CHECK(r->fields.at("ok").version == 12);
  CHECK(r->fields.at("note").version == 12);
  CHECK(r->version == 12);

  REQUIRE(t.s->put(edit(t.id, {{"ok", false}})).ok());
  auto next = t.push_one();
  CHECK(next.base == VersionMap{{"", 12}, {"ok", 12}});
  auto none = result(next, "applied", 13);
  none.versions.clear();  // "versions": {}
  REQUIRE(t.s->apply_sync({next}, response({none})).ok());
  CHECK(t.s->get(t.id)->fields.at("ok").version == 13);
}

TEST_CASE("a result for a change that next_batch never handed out is applied as stored",
          "[core][apply]") {
  // The sync engine sends what next_batch returned (marked attempted, never
  // changed after), and apply_sync uses that copy. A change taken otherwise is
  // read from the outbox: a caller's copy that differs does not count.
  Synced t;
  REQUIRE(t.s->put(edit(t.id, {{"count", 5}})).ok());
  auto c = t.s->outbox()->at(0).change;
  c.fields["count"] = 999;
  REQUIRE(t.s->apply_sync({c}, response({result(c, "applied", 12)})).ok());
  auto r = t.s->get(t.id);
  CHECK(r->fields.at("count").value == 5);
  CHECK(r->fields.at("count").version == 12);
  CHECK_FALSE(r->fields.at("count").dirty);
  CHECK(t.s->outbox()->empty());
}

// An encoded batch's changes with their fields parsed from fields_text.
std::vector<Change> parsed(const OutboxBatch& b) {
  REQUIRE(b.fields_text.size() == b.changes.size());
  std::vector<Change> out = b.changes;
  for (std::size_t i = 0; i < out.size(); ++i) {
    // An upsert's fields are left as text; a delete's are parsed as well.
    CHECK(out[i].fields.is_null() == (out[i].op == "upsert"));
    out[i].fields = json::parse(b.fields_text[i]);
  }
  return out;
}

TEST_CASE("a batch encoded from the outbox's text is the batch next_batch gives, encoded",
          "[core][apply]") {
  Synced t;
  REQUIRE(t.s->put(edit(t.id, {{"count", 7}, {"note", "tab\there, \"quotes\", é"}})).ok());
  auto other = *t.s->put(new_record({{"name", "y"}}));
  auto first = t.s->next_batch_encoded(10, {});
  REQUIRE(first.ok());
  REQUIRE(first->changes.size() == 2);
  CHECK(first->changes[0].base == VersionMap{{"", 10}, {"count", 10}});
  CHECK(first->changes[1].base == VersionMap{{"", 0}});
  CHECK(json::parse(first->text) == json::parse(SyncRequest::encode_changes(parsed(*first))));
  CHECK(parsed(*first)[0].fields == json{{"count", 7}, {"note", "tab\there, \"quotes\", é"}});
  REQUIRE(t.s->put(edit(t.id, {{"count", 8}})).ok());  // a second change of t.id, not coalesced
  // Handed out like next_batch's: attempted, and the rest follows the batch.
  auto outbox = t.s->outbox();
  REQUIRE(outbox.ok());
  REQUIRE(outbox->size() == 3);
  CHECK(outbox->at(0).attempted);
  CHECK(outbox->at(1).attempted);
  CHECK_FALSE(outbox->at(2).attempted);
  auto second = t.s->next_batch_encoded(10, first->changes);
  REQUIRE(second.ok());
  REQUIRE(second->changes.size() == 0);  // t.id and the other record are in flight
  REQUIRE(t.s->apply_batch(*first, response({result(parsed(*first)[0], "applied", 11),
                                             result(parsed(*first)[1], "applied", 12)}))
              .ok());
  REQUIRE(t.s->remove(other).ok());
  auto third = t.s->next_batch_encoded(10, {});
  REQUIRE(third.ok());
  REQUIRE(third->changes.size() == 2);
  CHECK(third->changes[1].op == "delete");
  CHECK(json::parse(third->text) == json::parse(SyncRequest::encode_changes(parsed(*third))));
  CHECK_FALSE(json::parse(third->text)[1].contains("fields"));
}

namespace {

// records.synced of `id`, as stored.
std::string stored_synced(const std::string& path, const std::string& id) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT synced FROM records WHERE id = ?1", -1, &q, nullptr) ==
          SQLITE_OK);
  sqlite3_bind_text(q, 1, id.c_str(), -1, SQLITE_TRANSIENT);
  REQUIRE(sqlite3_step(q) == SQLITE_ROW);
  std::string stored = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
  sqlite3_finalize(q);
  sqlite3_close(db);
  return stored;
}

void set_synced(const std::string& path, const std::string& id, const std::string& text) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "UPDATE records SET synced = ?2 WHERE id = ?1", -1, &q, nullptr) ==
          SQLITE_OK);
  sqlite3_bind_text(q, 1, id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 2, text.c_str(), -1, SQLITE_TRANSIENT);
  REQUIRE(sqlite3_step(q) == SQLITE_DONE);
  sqlite3_finalize(q);
  sqlite3_close(db);
}

}  // namespace

TEST_CASE("a first create applied stores the same values text as any other answer",
          "[core][apply]") {
  // A create of a record the server never had is written straight to text
  // (store.cpp, apply_result); the text must be what the general path writes.
  TempDir dir;
  auto s = open_with_form(dir.file("a.db"));
  const json values = {
      {"name", "é \"q\"\n\\ \u0001"},    {"count", 0},           {"ok", false},
      {"tags", json::array({"a", "c"})}, {"when", "2026-11-29"}, {"note", nullptr}};
  auto id = *s->put(new_record(values));
  auto batch = *s->next_batch(10);
  REQUIRE(batch.size() == 1);
  // count was equal on the server already (version 5); the rest is the seq.
  REQUIRE(s->apply_sync(batch, response({result(batch[0], "applied", 12, {{"count", 5}})}, {}, 12))
              .ok());
  json expected = json::object();
  for (const auto& [name, value] : batch[0].fields.items())
    expected[name] = json::array({value, name == "count" ? 5 : 12});
  CHECK(stored_synced(dir.file("a.db"), id) == expected.dump());
  auto rec = s->get(id);
  REQUIRE(rec.ok());
  CHECK_FALSE(rec->dirty);
  CHECK(rec->version == 12);
  for (const auto& [name, value] : batch[0].fields.items()) {
    CHECK(rec->fields.at(name).value == value);
    CHECK(rec->fields.at(name).version == (name == "count" ? 5 : 12));
  }
}

TEST_CASE("a create applied whole at its seq is stored compact and reads as every value at it",
          "[core][apply]") {
  TempDir dir;
  const auto path = dir.file("a.db");
  auto s = open_with_form(path);
  const json values = {
      {"name", "é \"q\"\n"}, {"count", 3}, {"tags", json::array({"a"})}, {"note", nullptr}};
  auto id = *s->put(new_record(values));
  auto batch = s->next_batch_encoded(10, {});
  REQUIRE(batch.ok());
  REQUIRE(batch->changes.size() == 1);
  const std::string outbox_text = batch->fields_text[0];
  // A version given equal to the seq is the same as one left out.
  REQUIRE(
      s->apply_batch(*batch, response({result(parsed(*batch)[0], "applied", 12, {{"count", 12}})}))
          .ok());
  CHECK(stored_synced(path, id) == "{\"\":12," + outbox_text.substr(1));
  auto rec = s->get(id);
  REQUIRE(rec.ok());
  CHECK_FALSE(rec->dirty);
  CHECK(rec->version == 12);
  REQUIRE(rec->fields.size() == values.size());
  for (const auto& [name, value] : values.items()) {
    CHECK(rec->fields.at(name).value == value);
    CHECK(rec->fields.at(name).version == 12);
  }

  // An edit builds on 12; its answer is written paired, the rest kept at 12.
  REQUIRE(s->put(edit(id, {{"count", 4}})).ok());
  CHECK(s->outbox()->at(0).change.base == VersionMap{{"", 12}, {"count", 12}});
  auto second = s->next_batch(10);
  REQUIRE(second->size() == 1);
  REQUIRE(s->apply_sync(*second, response({result(second->at(0), "applied", 20)})).ok());
  json paired = json::parse(stored_synced(path, id));
  CHECK_FALSE(paired.contains(""));
  CHECK(paired.at("count") == json::array({4, 20}));
  CHECK(paired.at("name") == json::array({values.at("name"), 12}));
  CHECK(paired.at("note") == json::array({nullptr, 12}));
  CHECK(s->get(id)->fields.at("count").version == 20);

  // A compact text whose version is not a whole number >= 1 is damage, not data.
  s.reset();
  for (const char* bad : {R"({"":0,"name":"x"})", R"({"":"12","name":"x"})", R"({"":1.5})"}) {
    set_synced(path, id, bad);
    auto got = open_store(path)->get(id);
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().code == Errc::corrupt);
  }
  // The compact form of nothing: an empty record at 7.
  set_synced(path, id, R"({"":7})");
  CHECK(open_store(path)->get(id)->fields.empty());
}

TEST_CASE("applied: a later pending edit stays visible and is rebased", "[core][apply][rebase]") {
  Synced t;
  REQUIRE(t.s->put(edit(t.id, {{"count", 2}, {"note", "a"}})).ok());
  auto sent = t.push_one();  // base count=10, note=0
  REQUIRE(t.s->put(edit(t.id, {{"count", 3}, {"ok", true}})).ok());
  auto later = t.s->outbox()->at(1).change;
  CHECK(later.base == VersionMap{{"", 10}, {"count", 10}});

  REQUIRE(t.s->apply_sync({sent}, response({result(sent, "applied", 20)})).ok());
  auto out = t.s->outbox();
  REQUIRE(out->size() == 1);
  // count was built on top of this officer's own value: its base moves to 20; ok
  // was never in the applied change and keeps its base.
  CHECK(out->at(0).change.base == VersionMap{{"", 20}, {"count", 20}});
  CHECK(out->at(0).change.id == later.id);
  auto rec = t.s->get(t.id);
  CHECK(rec->fields.at("count").value == 3);
  CHECK(rec->fields.at("count").dirty);
  CHECK(rec->fields.at("count").version == 20);
  CHECK(rec->fields.at("note").value == "a");
  CHECK_FALSE(rec->fields.at("note").dirty);
  CHECK(rec->dirty);
}

TEST_CASE("a dirty field keeps the base the officer edited on, even after a pull",
          "[core][apply][rebase]") {
  Synced t;
  REQUIRE(t.s->put(edit(t.id, {{"count", 2}})).ok());
  auto sent = t.push_one();
  // Another officer's value of count arrives while ours is pending.
  REQUIRE(t.s->apply_sync({}, response({}, {entry(15, t.id, "upsert", {{"count", 7}})}, 15)).ok());
  auto rec = t.s->get(t.id);
  CHECK(rec->fields.at("count").value == 2);  // pulled value does not overwrite the edit
  CHECK(rec->fields.at("count").dirty);
  CHECK(rec->fields.at("count").version == 15);
  // A second edit of count is still built on version 10: the officer never saw 7.
  REQUIRE(t.s->put(edit(t.id, {{"count", 4}})).ok());
  CHECK(t.s->outbox()->at(1).change.base.at("count") == 10);

  SECTION("the first edit conflicts: the later one keeps its base and joins the conflict") {
    REQUIRE(t.s->apply_sync({sent}, response({result(sent, "conflict", 16, {{"count", 15}},
                                                     {{3, "field", "count", ""}})}))
                .ok());
    CHECK(t.s->outbox()->at(0).change.base.at("count") == 10);
    rec = t.s->get(t.id);
    CHECK(rec->fields.at("count").value == 4);  // the later edit is still pending
    CHECK(rec->fields.at("count").under_review);
    CHECK(rec->fields.at("count").my_value == json(2));
  }
}

TEST_CASE("conflict: the server value shows, the officer's value waits for review",
          "[core][apply][conflict]") {
  Synced t;
  REQUIRE(t.s->put(edit(t.id, {{"count", 5}, {"note", "n"}})).ok());
  auto c = t.push_one();
  REQUIRE(t.s->apply_sync({c}, response({result(c, "conflict", 21, {{"count", 18}, {"note", 21}},
                                                {{77, "field", "count", ""}})},
                                        {entry(18, t.id, "upsert", {{"count", 9}})}, 21))
              .ok());
  auto rec = t.s->get(t.id);
  const auto& count = rec->fields.at("count");
  CHECK(count.value == 9);
  CHECK(count.version == 18);
  CHECK_FALSE(count.dirty);
  CHECK(count.under_review);
  CHECK(count.conflict_id == 77);
  CHECK(count.my_value == json(5));
  CHECK(rec->fields.at("note").value == "n");  // applied
  CHECK(rec->fields.at("note").version == 21);
  CHECK_FALSE(rec->under_review);
  CHECK(t.s->outbox()->empty());
  CHECK(t.s->receipts()->at(0).status == "conflict");
  CHECK(t.s->status()->under_review == 1);
  auto j = rec->to_json();
  CHECK(j["fields"]["count"]["my_value"] == 5);
  CHECK(j["fields"]["count"]["conflict"] == 77);

  SECTION("a pulled resolution clears the mark") {
    ConflictRef resolved{77, "field", "count", "resolved"};
    REQUIRE(t.s->apply_sync(
                   {}, response({}, {entry(30, t.id, "upsert", {{"count", 5}}, {resolved})}, 30))
                .ok());
    rec = t.s->get(t.id);
    CHECK(rec->fields.at("count").value == 5);
    CHECK_FALSE(rec->fields.at("count").under_review);
    CHECK_FALSE(rec->fields.at("count").my_value);
    CHECK(t.s->status()->under_review == 0);
  }
}

TEST_CASE("delete results", "[core][apply][delete]") {
  Synced t;
  REQUIRE(t.s->remove(t.id).ok());
  auto d = t.push_one();
  CHECK(d.base == VersionMap{{"", 10}});

  SECTION("applied: a tombstone") {
    REQUIRE(t.s->apply_sync({d}, response({result(d, "applied", 11)})).ok());
    auto rec = t.s->get(t.id);
    CHECK(rec->deleted);
    CHECK(rec->version == 11);
    CHECK_FALSE(rec->dirty);
    CHECK(t.s->status()->deleted == 1);
  }
  SECTION("conflict: the record is live again and under review") {
    REQUIRE(t.s->apply_sync({d}, response({result(d, "conflict", 12, {}, {{5, "delete", "", ""}})}))
                .ok());
    auto rec = t.s->get(t.id);
    CHECK_FALSE(rec->deleted);
    CHECK(rec->under_review);
    CHECK(t.s->put(edit(t.id, {{"count", 2}})).ok());
  }
  SECTION("rejected: the record is live again, the delete is kept with its reason") {
    REQUIRE(t.s->apply_sync({d}, response({rejection(d, "forbidden")})).ok());
    CHECK_FALSE(t.s->get(t.id)->deleted);
    auto rej = t.s->rejected();
    REQUIRE(rej->size() == 1);
    CHECK(rej->at(0).change == d);
    CHECK(rej->at(0).reason.code == "forbidden");
  }
}

TEST_CASE("an edit of a record deleted on the server opens a delete conflict",
          "[core][apply][delete]") {
  Synced t;
  REQUIRE(t.s->put(edit(t.id, {{"count", 8}})).ok());
  auto c = t.push_one();
  REQUIRE(t.s->apply_sync({c}, response({result(c, "conflict", 13, {{"count", 10}},
                                                {{6, "delete", "", ""}})},
                                        {entry(12, t.id, "delete")}, 13))
              .ok());
  auto rec = t.s->get(t.id);
  CHECK(rec->deleted);  // the server's state
  CHECK(rec->under_review);
  CHECK(rec->fields.at("count").value == 1);  // nothing of the change applied
  CHECK(rec->fields.at("count").my_value == json(8));
  CHECK(rec->fields.at("count").conflict_id == 6);

  SECTION("kept by an admin: revived, marks cleared") {
    ConflictRef resolved{6, "delete", "", "resolved"};
    REQUIRE(t.s->apply_sync({}, response({},
                                         {entry(14, t.id, "revive", {{"name", "x"}, {"count", 1}},
                                                {resolved})},
                                         14))
                .ok());
    rec = t.s->get(t.id);
    CHECK_FALSE(rec->deleted);
    CHECK_FALSE(rec->under_review);
    CHECK_FALSE(rec->fields.at("count").under_review);
    CHECK(rec->fields.at("count").version == 14);
  }
}

TEST_CASE("duplicate_record marks the record under review, and the change was applied",
          "[core][apply][conflict]") {
  Synced t;
  REQUIRE(t.s->put(edit(t.id, {{"name", "y"}})).ok());
  auto c = t.push_one();
  REQUIRE(t.s->apply_sync(
                 {c}, response({result(c, "applied", 14, {}, {{9, "duplicate_record", "", ""}})}))
              .ok());
  auto rec = t.s->get(t.id);
  CHECK(rec->under_review);
  CHECK(rec->fields.at("name").value == "y");
  CHECK(rec->fields.at("name").version == 14);
}

TEST_CASE("rejected: the change is kept with its reason and the value reverts",
          "[core][apply][rejected]") {
  Synced t;
  REQUIRE(t.s->put(edit(t.id, {{"count", 50}})).ok());
  auto c = t.push_one();
  REQUIRE(t.s->apply_sync({c}, response({rejection(c, "validation", "count")})).ok());
  auto rec = t.s->get(t.id);
  CHECK(rec->fields.at("count").value == 1);
  CHECK_FALSE(rec->fields.at("count").dirty);
  CHECK(t.s->outbox()->empty());
  auto rej = t.s->rejected();
  REQUIRE(rej->size() == 1);
  CHECK(rej->at(0).change == c);
  CHECK(rej->at(0).reason == RejectReason{"validation", "refused", "count"});
  CHECK(parse_rfc3339_ms(rej->at(0).rejected_at).ok());
  CHECK(t.s->status()->rejected == 1);

  CHECK(t.s->discard_rejected("nope:1").error().code == Errc::not_found);
  REQUIRE(t.s->discard_rejected(c.id).ok());
  CHECK(t.s->rejected()->empty());
}

TEST_CASE("a rejected create of a record the server never had disappears locally",
          "[core][apply][rejected]") {
  TempDir dir;
  auto s = open_with_form(dir.file("a.db"));
  auto id = *s->put(new_record({{"name", "secret"}, {"count", 3}}));
  auto batch = *s->next_batch(5);
  REQUIRE(s->apply_sync(batch, response({rejection(batch[0], "forbidden")})).ok());
  CHECK(s->get(id).error().code == Errc::not_found);
  CHECK(s->list({"", "", true, -1})->empty());
  auto rej = s->rejected();
  REQUIRE(rej->size() == 1);
  CHECK(rej->at(0).change.fields == json({{"name", "secret"}, {"count", 3}}));
  // The officer can save it again under the same id.
  PutRequest again = new_record({{"name", "secret"}});
  again.record = id;
  CHECK(s->put(again).ok());
}

TEST_CASE("pulled entries", "[core][apply][pull]") {
  TempDir dir;
  auto s = open_with_form(dir.file("a.db"));
  std::string r = new_uuid_v7();

  REQUIRE(s->apply_sync({}, response({}, {entry(3, r, "upsert", {{"name", "n"}, {"count", 4}})}, 3))
              .ok());
  auto rec = s->get(r);
  REQUIRE(rec.ok());
  CHECK(rec->form == "survey");
  CHECK(rec->scope == "14.03.01.2001");
  CHECK(rec->version == 3);
  CHECK(rec->fields.at("count").value == 4);
  CHECK(rec->fields.at("count").version == 3);
  CHECK_FALSE(rec->dirty);

  SECTION("entries apply in seq order and older values never win") {
    REQUIRE(s->apply_sync({}, response({},
                                       {entry(6, r, "upsert", {{"count", 6}}),
                                        entry(5, r, "upsert", {{"count", 5}, {"ok", true}})},
                                       6))
                .ok());
    rec = s->get(r);
    CHECK(rec->fields.at("count").value == 6);
    CHECK(rec->fields.at("ok").value == true);
    CHECK(rec->version == 6);
  }
  SECTION("delete then revive") {
    REQUIRE(s->apply_sync({}, response({}, {entry(4, r, "delete")}, 4)).ok());
    CHECK(s->get(r)->deleted);
    CHECK(s->put(edit(r, {{"count", 1}})).error().code == Errc::deleted);
    REQUIRE(s->apply_sync({}, response({}, {entry(7, r, "revive", {{"name", "n"}})}, 7)).ok());
    CHECK_FALSE(s->get(r)->deleted);
    CHECK(s->get(r)->fields.at("name").version == 7);
  }
  SECTION("open and resolved conflict marks from the log") {
    REQUIRE(s->apply_sync({}, response({},
                                       {entry(4, r, "upsert", {},
                                              {{40, "field", "count", "open"},
                                               {41, "duplicate_record", "", "open"}})},
                                       4))
                .ok());
    rec = s->get(r);
    CHECK(rec->under_review);
    CHECK(rec->fields.at("count").under_review);
    CHECK(rec->fields.at("count").conflict_id == 40);
    CHECK_FALSE(rec->fields.at("count").my_value);
    REQUIRE(s->apply_sync({}, response({},
                                       {entry(5, r, "upsert", {{"count", 1}},
                                              {{40, "field", "count", "resolved"}})},
                                       5))
                .ok());
    rec = s->get(r);
    CHECK_FALSE(rec->fields.at("count").under_review);
    CHECK(rec->under_review);
  }
  SECTION("the cursor never goes down, except by reset_cursor") {
    REQUIRE(s->apply_sync({}, response({}, {}, 2)).ok());
    CHECK(*s->cursor() == 3);
    REQUIRE(s->apply_sync({}, response({}, {}, 9)).ok());
    CHECK(*s->cursor() == 9);
    REQUIRE(s->reset_cursor().ok());
    CHECK(*s->cursor() == 0);
    CHECK_FALSE(s->status()->last_sync_at.empty());
  }
}

TEST_CASE("malformed answers are refused and change nothing", "[core][apply][protocol]") {
  Synced t;
  REQUIRE(t.s->put(edit(t.id, {{"count", 2}})).ok());
  auto c = t.push_one();
  Change stranger = c;
  stranger.id = t.s->device_id() + ":999";
  auto before_out = t.s->outbox();

  std::vector<SyncResponse> bad;
  bad.push_back(
      response({result(stranger, "applied", 30)}, {entry(30, t.id, "upsert", {{"count", 9}})}, 30));
  bad.push_back(response({result(c, "applied", 30), result(c, "applied", 30)}, {}, 30));
  bad.push_back(response({result(c, "weird", 30)}, {}, 30));
  bad.push_back(response({result(c, "applied", 0)}, {}, 30));
  bad.push_back(response({result(c, "applied", 30)}, {entry(31, "not-a-uuid", "upsert")}, 31));
  bad.push_back(response({result(c, "applied", 30)}, {entry(31, t.id, "explode")}, 31));
  // "" names no field: in a stored record it marks the compact form.
  bad.push_back(response({result(c, "applied", 30)},
                         {entry(31, new_uuid_v4(), "upsert", {{"", 5}, {"count", 1}})}, 31));
  for (const auto& resp : bad) {
    auto r = t.s->apply_sync({c}, resp);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::protocol);
  }
  CHECK(t.s->outbox()->size() == before_out->size());
  CHECK(*t.s->cursor() == 10);
  CHECK(t.s->get(t.id)->fields.at("count").value == 2);
}

TEST_CASE("applying the same answer twice changes nothing the second time", "[core][apply]") {
  Synced t;
  REQUIRE(t.s->put(edit(t.id, {{"count", 2}})).ok());
  auto c = t.push_one();
  auto resp = response({result(c, "applied", 11)}, {entry(11, t.id, "upsert", {{"count", 2}})}, 11);
  REQUIRE(t.s->apply_sync({c}, resp).ok());
  auto once = t.s->get(t.id)->to_json();
  auto receipts = t.s->receipts()->size();
  REQUIRE(t.s->apply_sync({c}, resp).ok());
  CHECK(t.s->get(t.id)->to_json() == once);
  CHECK(t.s->receipts()->size() == receipts);
  CHECK(t.s->outbox()->empty());
}

namespace {

// Every row of `records`, as text, read from the file.
std::vector<std::string> record_rows(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  REQUIRE(sqlite3_prepare_v2(db,
                             "SELECT id || '|' || version || '|' || server_deleted || '|' || "
                             "tomb_seq || '|' || local_deleted || '|' || synced FROM records "
                             "ORDER BY id",
                             -1, &q, nullptr) == SQLITE_OK);
  std::vector<std::string> rows;
  while (sqlite3_step(q) == SQLITE_ROW)
    rows.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)));
  sqlite3_finalize(q);
  sqlite3_close(db);
  return rows;
}

// What a store holds that an answer changes, but the local times it was written.
json state_of(Store& s) {
  json j = json::object();
  auto records = s.list(RecordQuery{"", "", /*include_deleted=*/true, -1});
  REQUIRE(records.ok());
  for (const auto& r : *records) j["records"].push_back(r.to_json());
  auto outbox = s.outbox();
  auto rejected = s.rejected();
  auto receipts = s.receipts();
  REQUIRE(outbox.ok());
  REQUIRE(rejected.ok());
  REQUIRE(receipts.ok());
  for (const auto& e : *outbox) j["outbox"].push_back({e.change.to_json(), e.attempted, e.counter});
  for (const auto& r : *rejected)
    j["rejected"].push_back({r.change.to_json(), r.reason.code, r.reason.field});
  for (const auto& r : *receipts) j["receipts"].push_back({r.change_id, r.status, r.seq});
  return j;
}

}  // namespace

TEST_CASE("an encoded batch's answer is applied exactly as the parsed batch's",
          "[core][apply][property]") {
  // next_batch_encoded leaves upserts' fields as text, and apply_batch
  // writes a first create's values from that text (append_paired_members) or
  // parses it for the other cases. Two copies of one store take the same batch
  // each way and the same answer: they must end byte for byte the same.
  for (std::uint32_t seed = 1; seed <= 40; ++seed) {
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<std::uint32_t>(n)); };
    TempDir dir;
    const std::string a_path = dir.file("a.db"), b_path = dir.file("b.db");
    std::vector<std::string> ids;
    {
      auto s = open_with_form(a_path);
      // Some records the server has (synced values), some it never saw.
      for (int i = 0; i < 6; ++i)
        ids.push_back(*s->put(new_record({{"name", "r" + std::to_string(i)},
                                          {"count", pick(100)},
                                          {"tags", json::array({"a", "c"})}})));
      auto first = *s->next_batch(3);
      std::vector<ChangeResult> results;
      for (const auto& c : first) results.push_back(result(c, "applied", 10 + pick(5)));
      REQUIRE(s->apply_sync(first, response(results, {}, 20)).ok());
      for (int i = 0; i < 6; ++i) {
        switch (pick(5)) {
          case 0:
            REQUIRE(s->remove(ids[static_cast<std::size_t>(i)]).ok());
            break;
          case 1:
            REQUIRE(s->put(edit(ids[static_cast<std::size_t>(i)],
                                {{"note", "é \"q\"\n\\ \u0001 " + std::to_string(pick(9))},
                                 {"ok", pick(2) == 0},
                                 {"when", nullptr}}))
                        .ok());
            break;
          default:
            break;
        }
      }
      for (int i = 0; i < 3; ++i)
        ids.push_back(*s->put(new_record({{"name", "n" + std::to_string(i)}, {"count", i}})));
    }
    for (const char* suffix : {"", "-wal"})  // the copy, of a closed store
      if (std::filesystem::exists(a_path + suffix))
        std::filesystem::copy_file(a_path + suffix, b_path + suffix);
    // One clock for both: the edits below get the same HLC in each copy.
    auto a = open_store(a_path, [] { return std::int64_t{1'795'000'000'000}; });
    auto b = open_store(b_path, [] { return std::int64_t{1'795'000'000'000}; });
    auto parsed_batch = a->next_batch(50);
    auto text_batch = b->next_batch_encoded(50, {});
    REQUIRE(parsed_batch.ok());
    REQUIRE(text_batch.ok());
    REQUIRE(parsed(*text_batch) == *parsed_batch);
    // Edits made while the batch is out: answers rebase them.
    for (auto* s : {a.get(), b.get()})
      for (std::size_t i = 0; i < ids.size(); i += 3)
        (void)s->put(edit(ids[i], {{"count", static_cast<int>(i)}}));

    std::vector<ChangeResult> results;
    std::int64_t seq = 30;
    for (const auto& c : *parsed_batch) {
      ++seq;
      switch (pick(6)) {
        case 0:
          results.push_back(rejection(c, "validation", "count"));
          break;
        case 1:
          if (c.op == "upsert" && !c.fields.empty()) {
            results.push_back(result(c, "conflict", seq, {},
                                     {ConflictRef{seq * 10, "field", c.fields.begin().key(), ""}}));
            break;
          }
          [[fallthrough]];
        case 2: {  // some values were equal on the server already, some never synced
          VersionMap versions;
          for (const auto& [name, value] : c.fields.items())
            versions[name] = pick(3) == 0 ? std::int64_t{0} : seq - pick(2);
          results.push_back(result(c, "applied", seq, versions));
          break;
        }
        default:
          results.push_back(result(c, "applied", seq));
      }
    }
    auto answer = response(results, {entry(seq + 1, ids[0], "upsert", {{"count", 77}})}, seq + 1);
    REQUIRE(a->apply_sync(*parsed_batch, answer).ok());
    REQUIRE(b->apply_batch(*text_batch, answer).ok());
    CHECK(state_of(*a) == state_of(*b));
    a.reset();
    b.reset();
    CHECK(record_rows(a_path) == record_rows(b_path));
  }
}

TEST_CASE("an encoded batch whose fields text cannot be read applies nothing", "[core][apply]") {
  TempDir dir;
  auto s = open_with_form(dir.file("a.db"));
  auto id = *s->put(new_record({{"name", "x"}}));
  auto batch = s->next_batch_encoded(10, {});
  REQUIRE(batch.ok());
  REQUIRE(batch->changes.size() == 1);
  const auto answer = response({result(parsed(*batch)[0], "applied", 5, {{"name", 5}})});
  batch->fields_text[0] = R"({"name":)";  // damaged between the outbox and the answer
  auto r = s->apply_batch(*batch, answer);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::corrupt);
  CHECK(s->outbox()->size() == 1);  // still to be sent, with its values
  CHECK(s->get(id)->dirty);
  batch->fields_text.pop_back();
  CHECK(s->apply_batch(*batch, answer).error().code == Errc::invalid_argument);
}

TEST_CASE("the cursor moves over entries of this device's own changes right above it",
          "[core][apply][cursor]") {
  TempDir dir;
  auto s = open_with_form(dir.file("a.db"));
  for (int i = 0; i < 5; ++i) REQUIRE(s->put(new_record({{"name", std::to_string(i)}})).ok());
  auto batch = *s->next_batch(10);
  REQUIRE(batch.size() == 5);
  // Pushes only (no pull: cursor 0 in the answer). Ours are 1 and 2...
  REQUIRE(s->apply_sync({batch[0], batch[1]},
                        response({result(batch[0], "applied", 1), result(batch[1], "applied", 2)}))
              .ok());
  CHECK(*s->cursor() == 2);
  // ...3 is someone else's, which a pull has to bring; ours 4 and 5 wait for it.
  // A rejected change has no entry and moves nothing.
  REQUIRE(s->apply_sync({batch[2], batch[3], batch[4]},
                        response({result(batch[2], "applied", 4), result(batch[3], "applied", 5),
                                  rejection(batch[4], "invalid_value", "name")}))
              .ok());
  CHECK(*s->cursor() == 2);
  const std::string other = "0193a1c2-0000-7000-8000-0000000000cc";
  REQUIRE(s->apply_sync({}, response({}, {entry(3, other, "upsert", {{"name", "z"}})}, 3)).ok());
  CHECK(*s->cursor() == 5);
  CHECK(s->get(other)->fields.at("name").value == "z");

  // After a reset (a server restored from a backup reuses seqs) the receipts so
  // far name nothing: the cursor starts again at 0 and stays there.
  REQUIRE(s->reset_cursor().ok());
  REQUIRE(s->apply_sync({}, response({}, {}, 0)).ok());
  CHECK(*s->cursor() == 0);
  REQUIRE(s->put(new_record({{"name", "after"}})).ok());
  auto later = *s->next_batch(10);
  REQUIRE(later.size() == 1);
  REQUIRE(s->apply_sync(later, response({result(later[0], "applied", 1)})).ok());
  CHECK(*s->cursor() == 1);  // its own receipt, from after the reset, counts
}
