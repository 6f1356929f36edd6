// POST /v1/sync: the merge rule, replays, conflicts, deletes, duplicates,
// rejections in order, scopes, and pull paging (protocol.md "Sync").
#include <sqlite3.h>

#include <catch2/catch.hpp>

#include "merge.hpp"
#include "server_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::server;
using namespace fieldsync::server::test;

namespace {

struct SyncFixture : ServerFixture {
  std::string bantan, bantan2, bengkalis, admin;
  SyncFixture() {
    add_user("officer.bantan", "officer", {"14.03.02"});
    add_user("officer.bengkalis", "officer", {"14.03.01"});
    add_user("admin", "admin", {});
    bantan = login("officer.bantan", "secret-password", "dev-a");
    bantan2 = login("officer.bantan", "secret-password", "dev-b");
    bengkalis = login("officer.bengkalis", "secret-password", "dev-c");
    admin = login("admin", "secret-password", "dev-admin");
  }

  // Creates record n in Bantan from dev-a and returns its result.
  json create(int n, json extra = json::object(), const std::string& code = "14.03.02.2001") {
    json fields = {{"code", code}, {"period", "2026"}};
    if (extra.is_object()) fields.update(extra);
    auto r = sync(
        bantan, "dev-a",
        json::array({change("dev-a:" + std::to_string(100 + n), record_id(n), fields, {}, code)}));
    return r["results"][0];
  }

  RecordState record(int n) {
    auto r = store->record(record_id(n));
    REQUIRE(r.ok());
    REQUIRE(r->has_value());
    return **r;
  }

  ConflictRow conflict(std::int64_t id) {
    auto c = store->conflict(id);
    REQUIRE(c.ok());
    REQUIRE(c->has_value());
    return **c;
  }
};

std::int64_t seq_of(const json& result) {
  return result.at("seq").get<std::int64_t>();
}

}  // namespace

TEST_CASE("an upsert is applied with one log entry and versions", "[server][sync]") {
  SyncFixture f;
  f.advance(std::chrono::seconds(5));  // the edit was made 5 s before the sync
  auto res = f.sync(f.bantan, "dev-a",
                    json::array({change("dev-a:1", record_id(1),
                                        {{"code", "x"}, {"period", "2026"}, {"count", 5}})}));
  REQUIRE(res["results"].size() == 1);
  auto r = res["results"][0];
  CHECK(r["status"] == "applied");
  const auto seq = seq_of(r);
  CHECK(r["versions"] == json{{"code", seq}, {"period", seq}, {"count", seq}});
  CHECK(!r.contains("replayed"));
  REQUIRE(res["changes"].size() == 1);  // the caller's own entry comes back in the pull
  auto entry = LogEntry::from_json(res["changes"][0]);
  REQUIRE(entry.ok());
  CHECK(entry->seq == seq);
  CHECK(entry->origin == "dev-a:1");
  CHECK(entry->author == "officer.bantan");
  CHECK(entry->device == "dev-a");
  CHECK(entry->form == "survey");
  CHECK(entry->form_version == 1);
  CHECK(entry->scope == "14.03.02.2001");
  CHECK(entry->op == "upsert");
  CHECK(entry->fields == json{{"code", "x"}, {"period", "2026"}, {"count", 5}});
  CHECK(entry->hlc == hlc_at(kStartMs, 1));
  CHECK(res["cursor"] == seq);
  CHECK(res["more"] == false);

  auto rec = f.record(1);
  CHECK(rec.row.version == seq);
  CHECK(rec.row.fields.at("count").value == 5);
  CHECK(rec.row.fields.at("count").version == seq);

  auto dev = f.store->device("dev-a");
  REQUIRE(dev.ok());
  REQUIRE(dev->has_value());
  CHECK((*dev)->user == "officer.bantan");
  CHECK((*dev)->changes_received == 1);
  CHECK((*dev)->last_sync_at_ms == kStartMs + 5000);
  CHECK((*dev)->clock_offset_ms == -5000);
  CHECK((*dev)->oldest_late_change_ms == 5000);
}

TEST_CASE("a new record is stored as its field rows would write it, key included",
          "[server][sync]") {
  // A create is written from the change's values (merge.cpp, execute); the text
  // and key must be what writing field rows gives, as an edit writes them.
  SyncFixture f;
  const json fields = {{"code", "K \"1\" \u00e9\\"},
                       {"period", "2026"},
                       {"count", 0},
                       {"note", nullptr},
                       {"flag", false},
                       {"tags", json::array({"a", "c"})}};
  auto r = f.sync(f.bantan, "dev-a", json::array({change("dev-a:1", record_id(1), fields)}));
  REQUIRE(r["results"][0]["status"] == "applied");
  const auto seq = seq_of(r["results"][0]);
  auto stored_row = [&](const std::string& column) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(f.db_path.c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* q = nullptr;
    const std::string sql = "SELECT " + column + " FROM records WHERE id = ?1";
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &q, nullptr) == SQLITE_OK);
    sqlite3_bind_text(q, 1, record_id(1).c_str(), -1, SQLITE_TRANSIENT);
    REQUIRE(sqlite3_step(q) == SQLITE_ROW);
    std::string text = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    sqlite3_close(db);
    return text;
  };
  json rows = json::object();
  for (const auto& [name, value] : fields.items()) rows[name] = json::array({value, seq});
  CHECK(stored_row("fields") == rows.dump());
  CHECK(stored_row("key_text") == json::array({fields["code"], "2026"}).dump());
  // An edit rewrites the row from field rows: only the edited field changes.
  auto e = f.sync(
      f.bantan, "dev-a",
      json::array({change("dev-a:2", record_id(1), {{"count", 3}}, {{"", seq}, {"count", seq}})}));
  REQUIRE(e["results"][0]["status"] == "applied");
  rows["count"] = json::array({3, seq_of(e["results"][0])});
  CHECK(stored_row("fields") == rows.dump());
  // The key found the record: the same key from another record is a duplicate.
  auto d = f.sync(f.bantan, "dev-a", json::array({change("dev-a:3", record_id(2), fields)}));
  CHECK(d["results"][0]["conflicts"][0]["kind"] == "duplicate_record");
}

TEST_CASE("a retried change gets its first result with replayed, and nothing happens again",
          "[server][sync]") {
  SyncFixture f;
  json batch =
      json::array({change("dev-a:1", record_id(1), {{"code", "x"}, {"period", "2026"}}),
                   change("dev-a:2", record_id(2), {{"code", "x"}}),  // rejected: no period
                   change("dev-a:3", record_id(1), {{"count", 3}}, {{"count", 0}})});
  auto first = f.sync(f.bantan, "dev-a", batch);
  const auto log_before = f.stats().log_entries;
  const auto quarantine_before = f.stats().quarantined;
  auto second = f.sync(f.bantan, "dev-a", batch);
  REQUIRE(second["results"].size() == 3);
  for (int i = 0; i < 3; ++i) {
    json expected = first["results"][i];
    expected["replayed"] = true;
    CHECK(second["results"][i] == expected);
  }
  CHECK(first["results"][1]["status"] == "rejected");
  CHECK(f.stats().log_entries == log_before);
  CHECK(f.stats().quarantined == quarantine_before);
}

TEST_CASE("a change id seen before with other content is rejected id_reused", "[server][sync]") {
  SyncFixture f;
  f.sync(f.bantan, "dev-a",
         json::array({change("dev-a:1", record_id(1), {{"code", "x"}, {"period", "2026"}})}));
  const auto before = f.stats();
  auto res =
      f.sync(f.bantan, "dev-a",
             json::array({change("dev-a:1", record_id(2), {{"code", "y"}, {"period", "2026"}})}));
  auto r = res["results"][0];
  CHECK(r["status"] == "rejected");
  CHECK(r["error"]["code"] == "id_reused");
  CHECK(f.stats().log_entries == before.log_entries);
  CHECK(f.stats().quarantined == before.quarantined + 1);
  auto q = f.store->quarantine(0, 100);
  REQUIRE(q.ok());
  CHECK(q->back().reason.code == "id_reused");
  CHECK(q->back().change["record"] == record_id(2));
  auto missing = f.store->record(record_id(2));
  REQUIRE(missing.ok());
  CHECK(!missing->has_value());
}

TEST_CASE("a resend that spells its zero bases otherwise is the same change, replayed",
          "[server][sync]") {
  SyncFixture f;
  const json fields = {{"code", "x"}, {"period", "2026"}};
  json compact = change("dev-a:1", record_id(1), fields, {{"", 0}});
  auto first = f.sync(f.bantan, "dev-a", json::array({compact}));
  REQUIRE(first["results"][0]["status"] == "applied");
  const auto before = f.stats();

  json expected = first["results"][0];
  expected["replayed"] = true;
  auto resend = [&](json base) {
    json c = compact;
    if (base.is_discarded())
      c.erase("base");
    else
      c["base"] = std::move(base);
    return f.sync(f.bantan, "dev-a", json::array({c}))["results"][0];
  };
  CHECK(resend({{"", 0}, {"code", 0}, {"period", 0}}) == expected);  // every zero written
  CHECK(resend({{"code", 0}}) == expected);                          // some
  CHECK(resend(json::object()) == expected);                         // none
  CHECK(resend(nullptr) == expected);
  CHECK(resend(json(json::value_t::discarded)) == expected);  // no base member at all
  CHECK(f.stats().log_entries == before.log_entries);

  // A base that is not zero is other content.
  auto other = resend({{"", 0}, {"code", 3}});
  CHECK(other["status"] == "rejected");
  CHECK(other["error"]["code"] == "id_reused");
  CHECK(f.stats().log_entries == before.log_entries);
}

TEST_CASE("compact_versions leaves out the versions equal to seq, replays included (addition E)",
          "[server][sync]") {
  SyncFixture f;
  auto created = f.create(1, {{"count", 5}});
  const auto seq1 = seq_of(created);
  // count is equal already (its version stays seq1); note is set (the new seq).
  json edit = change("dev-a:2", record_id(1), {{"count", 5}, {"note", "n"}}, {{"", seq1}});
  auto send = [&](json compact) {
    json body = {{"device_id", "dev-a"}, {"changes", json::array({edit})}, {"since", 0}};
    if (!compact.is_discarded()) body["compact_versions"] = std::move(compact);
    return f.call("POST", "/v1/sync", body.dump(), f.bantan);
  };
  auto first = send(true);
  REQUIRE(first.status == 200);
  auto r = json::parse(first.body)["results"][0];
  CHECK(r["status"] == "applied");
  const auto seq2 = seq_of(r);
  CHECK(seq2 > seq1);
  CHECK(r["versions"] == json{{"count", seq1}});

  // Without it the answer names every field, replays too (the processed row
  // keeps the short form; the rest is put back).
  auto full = json::parse(send(json(json::value_t::discarded)).body)["results"][0];
  CHECK(full["replayed"] == true);
  CHECK(full["versions"] == json{{"count", seq1}, {"note", seq2}});
  CHECK(json::parse(send(false).body)["results"][0]["versions"] == full["versions"]);
  auto again = json::parse(send(true).body)["results"][0];
  CHECK(again["replayed"] == true);
  CHECK(again["versions"] == json{{"count", seq1}});

  // A delete applied: its only version, "", is its seq.
  json del = change("dev-a:3", record_id(1), {}, {{"", seq2}}, "14.03.02.2001", "delete");
  json body = {{"device_id", "dev-a"}, {"changes", json::array({del})}, {"compact_versions", true}};
  auto d = json::parse(f.call("POST", "/v1/sync", body.dump(), f.bantan).body)["results"][0];
  CHECK(d["status"] == "applied");
  CHECK(d["versions"] == json::object());
  body.erase("compact_versions");
  auto d_full = json::parse(f.call("POST", "/v1/sync", body.dump(), f.bantan).body)["results"][0];
  CHECK(d_full["versions"] == json{{"", seq_of(d)}});

  for (const json& bad : {json(1), json("yes"), json::array()}) {
    json b = {{"device_id", "dev-a"}, {"changes", json::array()}, {"compact_versions", bad}};
    auto res = f.call("POST", "/v1/sync", b.dump(), f.bantan);
    CHECK(res.status == 400);
    CHECK(json::parse(res.body)["error"]["message"] == "compact_versions must be true or false");
  }
}

TEST_CASE(
    "change_hash gives one identity however the zero bases are spelled, and leaves the change as "
    "it was",
    "[server][sync]") {
  json c = change("dev-a:1", record_id(1), {{"code", "x"}}, {{"code", 0}});
  const json copy = c;
  const auto h = change_hash(c);
  CHECK(c == copy);
  json without = copy;
  without.erase("base");
  CHECK(change_hash(without) == h);
  CHECK(!without.contains("base"));
  json spelled = copy;
  spelled["base"] = {{"", 0}, {"code", 0}};
  CHECK(change_hash(spelled) == h);
  json core = copy;  // how the device core writes it: no zeros but base[""]
  core["base"] = {{"", 0}};
  CHECK(received_hash(core) == h);
  json other = copy;
  other["base"] = {{"", 0}, {"code", 2}};
  CHECK(change_hash(other) != h);
  json not_an_object = copy;
  not_an_object["base"] = "zero";
  CHECK(change_hash(not_an_object) == received_hash(not_an_object));

  // Identities stored before change_hash() are matched too.
  CHECK(same_content(h, copy, h));
  CHECK(same_content(received_hash(copy), copy, h));     // the text as received
  CHECK(same_content(received_hash(spelled), core, h));  // every zero written (the app before)
  CHECK(!same_content(received_hash(other), core, h));
}

TEST_CASE("a replay identity stored by an earlier server still counts", "[server][sync]") {
  // Earlier servers stored the hash of the change's text as received, and the
  // device core then wrote every zero base; the app resends it without them.
  struct Case {
    const char* name;
    json first_base, resent_base;
  };
  const std::vector<Case> cases = {
      {"every zero written, resent in the core's form now",
       {{"", 0}, {"code", 0}, {"period", 0}},
       {{"", 0}}},
      {"no base at all (a client that leaves zeros out), resent the same", nullptr, nullptr},
  };
  for (const auto& k : cases) {
    SECTION(k.name) {
      SyncFixture f;
      auto with_base = [&](const json& base) {
        json c = change("dev-a:1", record_id(1), {{"code", "x"}, {"period", "2026"}});
        if (base.is_null())
          c.erase("base");
        else
          c["base"] = base;
        return c;
      };
      const json first_sent = with_base(k.first_base);
      auto first = f.sync(f.bantan, "dev-a", json::array({first_sent}));
      REQUIRE(first["results"][0]["status"] == "applied");
      {
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(f.db_path.c_str(), &db) == SQLITE_OK);
        const std::string sql = "UPDATE processed SET content_hash = '" +
                                received_hash(first_sent) + "' WHERE change_id = 'dev-a:1'";
        CHECK(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
        CHECK(sqlite3_changes(db) == 1);
        sqlite3_close(db);
      }
      json stored_hash_differs = first_sent;
      CHECK(change_hash(stored_hash_differs) != received_hash(first_sent));
      const auto before = f.stats();
      auto again = f.sync(f.bantan, "dev-a", json::array({with_base(k.resent_base)}))["results"][0];
      json expected = first["results"][0];
      expected["replayed"] = true;
      CHECK(again == expected);
      CHECK(f.stats().log_entries == before.log_entries);
    }
  }
}

TEST_CASE("field versions: set, equal value, conflict, and merge of different fields",
          "[server][sync][conflict]") {
  SyncFixture f;
  auto created = f.create(1, {{"count", 1}, {"note", "start"}});
  const auto v0 = seq_of(created);

  SECTION("two devices, same field, different values: the first wins, the second is a candidate") {
    auto a =
        f.sync(f.bantan, "dev-a",
               json::array({change("dev-a:1", record_id(1), {{"count", 10}}, {{"count", v0}})}));
    CHECK(a["results"][0]["status"] == "applied");
    const auto va = seq_of(a["results"][0]);
    json b_change = change("dev-b:1", record_id(1), {{"count", 20}}, {{"count", v0}});
    b_change["hlc"] = hlc_at(kStartMs + 5, 2);
    auto b = f.sync(f.bantan2, "dev-b", json::array({b_change}));
    auto rb = b["results"][0];
    CHECK(rb["status"] == "conflict");
    CHECK(rb["versions"] == json{{"count", va}});
    REQUIRE(rb["conflicts"].size() == 1);
    CHECK(rb["conflicts"][0]["kind"] == "field");
    CHECK(rb["conflicts"][0]["field"] == "count");
    CHECK(f.record(1).row.fields.at("count").value == 10);  // the server value stays

    auto c = f.conflict(rb["conflicts"][0]["id"].get<std::int64_t>());
    CHECK(c.status == "open");
    CHECK(c.record == record_id(1));
    REQUIRE(c.candidates.size() == 1);
    CHECK(c.candidates[0].value == 20);
    CHECK(c.candidates[0].change == "dev-b:1");
    CHECK(c.candidates[0].author == "officer.bantan");
    CHECK(c.candidates[0].device == "dev-b");
    CHECK(c.candidates[0].hlc == hlc_at(kStartMs + 5, 2));
    CHECK(c.candidates[0].form_version == 1);
    CHECK(!c.candidates[0].received_at.empty());

    // The conflicting change still has its log entry, which names the conflict.
    auto entry = f.log().back();
    CHECK(entry.origin == "dev-b:1");
    CHECK(entry.fields.empty());
    REQUIRE(entry.conflicts.size() == 1);
    CHECK(entry.conflicts[0].status == "open");

    SECTION("a later change joins the open conflict; the field is not locked") {
      auto c3 =
          f.sync(f.bantan, "dev-a",
                 json::array({change("dev-a:2", record_id(1), {{"count", 30}}, {{"count", v0}})}));
      CHECK(c3["results"][0]["conflicts"][0]["id"] == rb["conflicts"][0]["id"]);
      CHECK(f.conflict(c.id).candidates.size() == 2);
      auto ok =
          f.sync(f.bantan, "dev-a",
                 json::array({change("dev-a:3", record_id(1), {{"count", 40}}, {{"count", va}})}));
      CHECK(ok["results"][0]["status"] == "applied");
      CHECK(f.record(1).row.fields.at("count").value == 40);
    }
  }
  SECTION("a stale base with the value the server already has is no conflict") {
    f.sync(f.bantan, "dev-a",
           json::array({change("dev-a:1", record_id(1), {{"tags", {"a", "b"}}}, {{"tags", 0}})}));
    const auto tag_version = f.record(1).row.fields.at("tags").version;
    auto b = f.sync(
        f.bantan2, "dev-b",
        json::array({change("dev-b:1", record_id(1), {{"tags", {"b", "a"}}}, {{"tags", 0}})}));
    CHECK(b["results"][0]["status"] == "applied");
    CHECK(b["results"][0]["versions"]["tags"] == tag_version);  // the device learns the version
    CHECK(!b["results"][0].contains("conflicts"));
    CHECK(f.stats().open_conflicts == 0);
  }
  SECTION("different fields of one record merge") {
    auto a =
        f.sync(f.bantan, "dev-a",
               json::array({change("dev-a:1", record_id(1), {{"count", 7}}, {{"count", v0}})}));
    auto b = f.sync(f.bantan2, "dev-b",
                    json::array({change("dev-b:1", record_id(1), {{"note", "seen"}, {"flag", true}},
                                        {{"note", v0}, {"flag", 0}})}));
    CHECK(a["results"][0]["status"] == "applied");
    CHECK(b["results"][0]["status"] == "applied");
    auto rec = f.record(1);
    CHECK(rec.row.fields.at("count").value == 7);
    CHECK(rec.row.fields.at("note").value == "seen");
    CHECK(rec.row.fields.at("flag").value == true);
    CHECK(rec.row.version == seq_of(b["results"][0]));
    CHECK(f.stats().open_conflicts == 0);
  }
  SECTION("one change with a conflicting and a clean field applies the clean one") {
    f.sync(f.bantan, "dev-a",
           json::array({change("dev-a:1", record_id(1), {{"count", 7}}, {{"count", v0}})}));
    auto b = f.sync(f.bantan2, "dev-b",
                    json::array({change("dev-b:1", record_id(1), {{"count", 8}, {"flag", false}},
                                        {{"count", v0}, {"flag", 0}})}));
    auto r = b["results"][0];
    CHECK(r["status"] == "conflict");
    CHECK(r["versions"]["flag"] == seq_of(r));
    CHECK(f.record(1).row.fields.at("flag").value == false);
    CHECK(f.record(1).row.fields.at("count").value == 7);
  }
  SECTION("an upsert that sets nothing still gets exactly one log entry") {
    const auto before = f.stats().log_entries;
    auto r = f.sync(f.bantan, "dev-a",
                    json::array({change("dev-a:1", record_id(1), json::object(), {{"", v0}})}));
    CHECK(r["results"][0]["status"] == "applied");
    CHECK(f.stats().log_entries == before + 1);
    CHECK(f.log().back().origin == "dev-a:1");
  }
}

TEST_CASE("delete against edit, both directions", "[server][sync][conflict]") {
  SyncFixture f;
  const auto v0 = seq_of(f.create(1, {{"count", 1}}));

  SECTION("a delete that saw the latest version deletes") {
    auto r = f.sync(
        f.bantan, "dev-a",
        json::array({change("dev-a:1", record_id(1), {}, {{"", v0}}, "14.03.02.2001", "delete")}));
    CHECK(r["results"][0]["status"] == "applied");
    CHECK(r["results"][0]["versions"][""] == seq_of(r["results"][0]));
    CHECK(f.record(1).row.deleted);
    CHECK(f.log().back().op == "delete");
  }
  SECTION("delete after an unseen edit: conflict, the record stays") {
    auto edit =
        f.sync(f.bantan, "dev-a",
               json::array({change("dev-a:1", record_id(1), {{"count", 2}}, {{"count", v0}})}));
    const auto v1 = seq_of(edit["results"][0]);
    auto del = f.sync(
        f.bantan2, "dev-b",
        json::array({change("dev-b:1", record_id(1), {}, {{"", v0}}, "14.03.02.2001", "delete")}));
    auto r = del["results"][0];
    CHECK(r["status"] == "conflict");
    CHECK(r["conflicts"][0]["kind"] == "delete");
    CHECK(r["conflicts"][0]["field"] == "");
    CHECK(r["versions"][""] == v1);
    CHECK(!f.record(1).row.deleted);
    // Its log entry deletes nothing: an upsert without fields naming the conflict.
    auto entry = f.log().back();
    CHECK(entry.origin == "dev-b:1");
    CHECK(entry.op == "upsert");
    CHECK(entry.fields.empty());
    REQUIRE(entry.conflicts.size() == 1);
    CHECK(entry.conflicts[0].kind == "delete");
    auto c = f.conflict(r["conflicts"][0]["id"].get<std::int64_t>());
    REQUIRE(c.candidates.size() == 1);
    CHECK(c.candidates[0].op == "delete");
    CHECK(c.candidates[0].value.is_null());
  }
  SECTION("edit after an unseen delete: conflict carrying the fields, the record stays deleted") {
    auto del = f.sync(
        f.bantan2, "dev-b",
        json::array({change("dev-b:1", record_id(1), {}, {{"", v0}}, "14.03.02.2001", "delete")}));
    REQUIRE(del["results"][0]["status"] == "applied");
    auto edit = f.sync(
        f.bantan, "dev-a",
        json::array({change("dev-a:1", record_id(1), {{"count", 2}}, {{"count", v0}, {"", v0}})}));
    auto r = edit["results"][0];
    CHECK(r["status"] == "conflict");
    CHECK(r["conflicts"][0]["kind"] == "delete");
    CHECK(r["versions"]["count"] == v0);
    auto rec = f.record(1);
    CHECK(rec.row.deleted);
    CHECK(rec.row.fields.at("count").value == 1);
    auto c = f.conflict(r["conflicts"][0]["id"].get<std::int64_t>());
    REQUIRE(c.candidates.size() == 1);
    CHECK(c.candidates[0].op == "upsert");
    CHECK(c.candidates[0].value == json{{"count", 2}});
  }
  SECTION("an edit whose base shows the delete was seen is rejected deleted") {
    auto del = f.sync(
        f.bantan2, "dev-b",
        json::array({change("dev-b:1", record_id(1), {}, {{"", v0}}, "14.03.02.2001", "delete")}));
    const auto vd = seq_of(del["results"][0]);
    auto edit = f.sync(f.bantan, "dev-a",
                       json::array({change("dev-a:1", record_id(1), {{"count", 2}}, {{"", vd}})}));
    CHECK(edit["results"][0]["status"] == "rejected");
    CHECK(edit["results"][0]["error"]["code"] == "deleted");
  }
  SECTION("deleting an unknown or deleted record is applied with a new seq") {
    auto r1 = f.sync(
        f.bantan, "dev-a",
        json::array({change("dev-a:1", record_id(9), {}, {{"", 0}}, "14.03.02.2001", "delete")}));
    CHECK(r1["results"][0]["status"] == "applied");
    CHECK(f.record(9).row.deleted);
    auto r2 = f.sync(
        f.bantan, "dev-a",
        json::array({change("dev-a:2", record_id(9), {}, {{"", 0}}, "14.03.02.2001", "delete")}));
    CHECK(r2["results"][0]["status"] == "applied");
    CHECK(seq_of(r2["results"][0]) > seq_of(r1["results"][0]));
  }
}

TEST_CASE("two live records with the same key open a duplicate_record conflict",
          "[server][sync][conflict]") {
  SyncFixture f;
  auto first = f.create(1);
  CHECK(!first.contains("conflicts"));
  auto second = f.sync(f.bantan2, "dev-b",
                       json::array({change("dev-b:1", record_id(2),
                                           {{"code", "14.03.02.2001"}, {"period", "2026"}})}));
  auto r = second["results"][0];
  CHECK(r["status"] == "applied");  // a duplicate is applied
  REQUIRE(r["conflicts"].size() == 1);
  CHECK(r["conflicts"][0]["kind"] == "duplicate_record");
  auto c = f.conflict(r["conflicts"][0]["id"].get<std::int64_t>());
  CHECK(c.kind == "duplicate_record");
  CHECK(c.records == std::vector<std::string>{record_id(1), record_id(2)});
  REQUIRE(c.candidates.size() == 1);
  CHECK(c.candidates[0].record == record_id(2));
  CHECK(f.record(2).row.fields.at("code").value == "14.03.02.2001");

  SECTION("a third duplicate joins; another period or a changed key does not collide") {
    auto third = f.sync(f.bantan2, "dev-b",
                        json::array({change("dev-b:2", record_id(3),
                                            {{"code", "14.03.02.2001"}, {"period", "2026"}})}));
    CHECK(third["results"][0]["conflicts"][0]["id"] == r["conflicts"][0]["id"]);
    CHECK(f.conflict(c.id).records.size() == 3);
    auto other = f.sync(f.bantan2, "dev-b",
                        json::array({change("dev-b:3", record_id(4),
                                            {{"code", "14.03.02.2001"}, {"period", "2025"}})}));
    CHECK(!other["results"][0].contains("conflicts"));
    const auto v4 = seq_of(other["results"][0]);
    auto moved = f.sync(
        f.bantan2, "dev-b",
        json::array({change("dev-b:4", record_id(4), {{"period", "2026"}}, {{"period", v4}})}));
    CHECK(moved["results"][0]["conflicts"][0]["kind"] == "duplicate_record");
    CHECK(moved["results"][0]["conflicts"][0]["id"] == r["conflicts"][0]["id"]);
  }
  SECTION("a deleted record is no longer a duplicate") {
    auto vd =
        f.sync(f.bantan, "dev-a",
               json::array({change("dev-a:9", record_id(1), {}, {{"", f.record(1).row.version}},
                                   "14.03.02.2001", "delete")}));
    REQUIRE(vd["results"][0]["status"] == "applied");
    auto fifth = f.sync(f.bantan2, "dev-b",
                        json::array({change("dev-b:5", record_id(5),
                                            {{"code", "14.03.02.2001"}, {"period", "2026"}})}));
    // record 2 is still live with the same key, so it collides with that one.
    REQUIRE(fifth["results"][0]["conflicts"].size() == 1);
    auto c5 = f.conflict(fifth["results"][0]["conflicts"][0]["id"].get<std::int64_t>());
    CHECK(std::find(c5.records.begin(), c5.records.end(), record_id(2)) != c5.records.end());
  }
}

TEST_CASE("rejections are checked in the documented order, quarantined, and apply nothing",
          "[server][sync][reject]") {
  SyncFixture f;
  auto v2 = publish_form(*f.writer, survey_form_v2(), "", "test", kStartMs);
  REQUIRE(v2.ok());
  REQUIRE(v2->version == 2);
  // Record 1 on form version 2 (it has `extra`, no `note`); record 2 deleted.
  json c1 = change("dev-a:1", record_id(1), {{"code", "k1"}, {"period", "2026"}, {"extra", 1}});
  c1["form_version"] = 2;
  json c2 = change("dev-a:2", record_id(2), {{"code", "k2"}, {"period", "2026"}});
  auto setup = f.sync(f.bantan, "dev-a", json::array({c1, c2}));
  const auto v_r2 = seq_of(setup["results"][1]);
  auto del = f.sync(
      f.bantan, "dev-a",
      json::array({change("dev-a:3", record_id(2), {}, {{"", v_r2}}, "14.03.02.2001", "delete")}));
  const auto v_del = seq_of(del["results"][0]);
  // dev-a:4 applied; reusing its id with other content is id_reused.
  f.sync(f.bantan, "dev-a",
         json::array({change("dev-a:4", record_id(3), {{"code", "k3"}, {"period", "2026"}})}));

  struct Case {
    const char* name;
    json change;
    const char* code;
    const char* field;
  };
  auto with = [](json c, const json& patch) {
    c.merge_patch(patch);
    return c;
  };
  json stale = change("dev-a:10", record_id(1), {{"note", "old field"}});
  stale["form_version"] = 1;
  std::vector<Case> cases = {
      {"forbidden before everything (scope, unknown form, bad value)",
       with(change("dev-a:10", record_id(7), {{"code", 5}}, {}, "14.03.01.2001"),
            {{"form", "nope"}}),
       "forbidden", "scope"},
      {"forbidden for a stored record outside the scopes",
       change("dev-a:10", record_id(8), {{"count", 1}}, {}, "14.03.02.2001"), "forbidden",
       "record"},
      {"unknown_form before validation",
       with(change("dev-a:10", record_id(7), {{"code", 5}}), {{"form", "nope"}}), "unknown_form",
       "form"},
      {"unknown form version",
       with(change("dev-a:10", record_id(7), {{"code", "a"}, {"period", "b"}}),
            {{"form_version", 9}}),
       "unknown_form", "form_version"},
      {"validation: a value",
       change("dev-a:10", record_id(7), {{"code", "a"}, {"period", "b"}, {"count", -1}}),
       "validation", "count"},
      {"validation: a required field on create", change("dev-a:10", record_id(7), {{"code", "a"}}),
       "validation", "period"},
      {"validation: a required field set to null",
       change("dev-a:10", record_id(3), {{"code", nullptr}}), "validation", "code"},
      {"validation: an unknown field", change("dev-a:10", record_id(3), {{"colour", "red"}}),
       "validation", "colour"},
      {"validation: the scope of a record changed",
       change("dev-a:10", record_id(3), {{"count", 1}}, {}, "14.03.02.2002"), "validation",
       "scope"},
      {"validation: a malformed hlc",
       with(change("dev-a:10", record_id(3), {{"count", 1}}), {{"hlc", "yesterday"}}), "validation",
       "hlc"},
      {"validation: a wrong op",
       with(change("dev-a:10", record_id(3), {{"count", 1}}), {{"op", "merge"}}), "validation",
       "op"},
      {"validation: another device's change id", change("dev-b:10", record_id(3), {{"count", 1}}),
       "validation", "id"},
      {"validation: a delete without base[\"\"]",
       change("dev-a:10", record_id(3), {}, {}, "14.03.02.2001", "delete"), "validation", "base"},
      {"validation before stale_form_version", with(stale, {{"fields", {{"note", 7}}}}),
       "validation", "note"},
      {"stale_form_version", stale, "stale_form_version", "note"},
      {"deleted (base saw the delete)",
       change("dev-a:10", record_id(2), {{"count", 1}}, {{"", v_del}}), "deleted", ""},
      {"deleted before id_reused", change("dev-a:4", record_id(2), {{"count", 1}}, {{"", v_del}}),
       "deleted", ""},
      {"id_reused", change("dev-a:4", record_id(3), {{"count", 2}}), "id_reused", "id"},
  };
  // Record 8 belongs to Bengkalis (created there by its officer).
  f.sync(f.bengkalis, "dev-c",
         json::array({change("dev-c:1", record_id(8), {{"code", "k8"}, {"period", "2026"}}, {},
                             "14.03.01.2001")}));

  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.name) {
      const auto before = f.stats();
      auto res = f.sync(f.bantan, "dev-a", json::array({c.change}));
      auto r = res["results"][0];
      INFO(r.dump());
      CHECK(r["status"] == "rejected");
      CHECK(r["error"]["code"] == c.code);
      CHECK(r["error"].value("field", "") == c.field);
      CHECK(!r["error"]["message"].get<std::string>().empty());
      const auto after = f.stats();
      CHECK(after.log_entries == before.log_entries);
      CHECK(after.head_seq == before.head_seq);
      CHECK(after.records == before.records);
      CHECK(after.quarantined == before.quarantined + 1);
      auto q = f.store->quarantine(0, 1000);
      REQUIRE(q.ok());
      CHECK(q->back().reason.code == c.code);
      CHECK(q->back().change == c.change);
      CHECK(q->back().user == "officer.bantan");
      CHECK(q->back().device == "dev-a");
    }
  }
}

TEST_CASE("scopes: officers cannot write outside and pull only inside their scopes",
          "[server][sync][scope]") {
  SyncFixture f;
  f.create(1, {}, "14.03.02.2001");
  f.sync(f.bengkalis, "dev-c",
         json::array({change("dev-c:1", record_id(2), {{"code", "k"}, {"period", "2026"}}, {},
                             "14.03.01.2001")}));
  // A prefix that is not whole between dots is another scope.
  f.add_user("officer.x", "officer", {"14.03.0"});
  auto x = f.login("officer.x", "secret-password", "dev-x");

  auto pull = [&](const std::string& token, const std::string& device) {
    std::vector<std::string> records;
    const json page = f.sync(token, device, json::array());
    for (const auto& e : page["changes"]) records.push_back(e["record"]);
    return records;
  };
  CHECK(pull(f.bantan, "dev-a") == std::vector<std::string>{record_id(1)});
  CHECK(pull(f.bengkalis, "dev-c") == std::vector<std::string>{record_id(2)});
  CHECK(pull(f.admin, "dev-admin") == std::vector<std::string>{record_id(1), record_id(2)});
  CHECK(pull(x, "dev-x").empty());

  auto push = f.sync(x, "dev-x",
                     json::array({change("dev-x:1", record_id(5), {{"code", "k"}, {"period", "1"}},
                                         {}, "14.03.01.2001")}));
  CHECK(push["results"][0]["error"]["code"] == "forbidden");

  // Reads of records follow the same rule.
  CHECK(f.call("GET", "/v1/records/" + record_id(2), {}, f.bantan).status == 404);
  CHECK(f.call("GET", "/v1/records/" + record_id(1), {}, f.bantan).status == 200);
  CHECK(f.call("GET", "/v1/records/" + record_id(2), {}, f.admin).status == 200);
  auto list = json::parse(f.call("GET", "/v1/records", {}, f.bengkalis).body);
  REQUIRE(list["records"].size() == 1);
  CHECK(list["records"][0]["id"] == record_id(2));
}

TEST_CASE("pull pages with more and cursor, and the cursor skips what is out of scope",
          "[server][sync][pull]") {
  SyncFixture f;
  // 7 entries in Bantan interleaved with 5 in Bengkalis.
  const std::string pattern = "AABAABABABAB";
  int a = 0, c = 0;
  for (char who : pattern) {
    if (who == 'A') {
      ++a;
      f.sync(f.bantan, "dev-a",
             json::array({change("dev-a:" + std::to_string(a), record_id(a),
                                 {{"code", "a" + std::to_string(a)}, {"period", "1"}})}));
    } else {
      ++c;
      f.sync(f.bengkalis, "dev-c",
             json::array({change("dev-c:" + std::to_string(c), record_id(100 + c),
                                 {{"code", "c" + std::to_string(c)}, {"period", "1"}}, {},
                                 "14.03.01.2001")}));
    }
  }
  // Bengkalis wrote last, so Bantan's last entry is below the head.
  const auto head = f.stats().head_seq;
  std::vector<std::int64_t> seen;
  std::int64_t since = 0;
  int rounds = 0;
  for (;;) {
    auto page = f.sync(f.bantan, "dev-a", json::array(), since, 3);
    ++rounds;
    CHECK(page["changes"].size() <= 3);
    for (const auto& e : page["changes"]) {
      CHECK(e["scope"] == "14.03.02.2001");
      seen.push_back(e["seq"]);
    }
    CHECK(page["cursor"].get<std::int64_t>() >= since);
    if (page["more"] == true) {
      CHECK(page["changes"].size() == 3);
      CHECK(page["cursor"] == page["changes"].back()["seq"]);
    } else {
      CHECK(page["cursor"] == head);
    }
    since = page["cursor"];
    if (page["more"] == false) break;
    REQUIRE(rounds < 10);
  }
  CHECK(seen.size() == 7);
  CHECK(std::is_sorted(seen.begin(), seen.end()));
  CHECK(rounds == 3);
  SECTION("nothing new: an empty page at the head") {
    auto page = f.sync(f.bantan, "dev-a", json::array(), head);
    CHECK(page["changes"].empty());
    CHECK(page["cursor"] == head);
    CHECK(page["more"] == false);
  }
  SECTION("limit 0 pushes only") {
    auto page = f.sync(f.bantan, "dev-a", json::array(), 0, 0);
    CHECK(page["changes"].empty());
    CHECK(page["more"] == true);
    CHECK(page["cursor"] == 0);
  }
  SECTION("a huge limit is accepted (and capped)") {
    auto page = f.sync(f.admin, "dev-admin", json::array(), 0, 1'000'000);
    CHECK(page["changes"].size() == 12);
  }
}

TEST_CASE("omit_own_through leaves out the device's own entries up to a counter (addition F)",
          "[server][sync][pull]") {
  SyncFixture f;
  auto push = [&](const std::string& token, const std::string& device, int counter, int n) {
    f.sync(token, device,
           json::array({change(device + ":" + std::to_string(counter), record_id(n),
                               {{"code", "c" + std::to_string(n)}, {"period", "1"}})}));
  };
  push(f.bantan, "dev-a", 1, 1);   // seq 1
  push(f.bantan, "dev-a", 2, 2);   // seq 2
  push(f.bantan2, "dev-b", 1, 3);  // seq 3: another device, the same counter
  push(f.bantan, "dev-a", 3, 4);   // seq 4
  push(f.bantan, "dev-a", 4, 5);   // seq 5
  auto pull = [&](std::int64_t since, std::int64_t limit, std::int64_t through,
                  json changes = json::array()) {
    json body = {{"device_id", "dev-a"}, {"changes", std::move(changes)},
                 {"since", since},       {"limit", limit},
                 {"echo", false},        {"omit_own_through", through}};
    auto res = f.call("POST", "/v1/sync", body.dump(), f.bantan);
    INFO(res.body);
    REQUIRE(res.status == 200);
    return json::parse(res.body);
  };
  auto seqs = [](const json& page) {
    std::vector<std::int64_t> out;
    for (const auto& e : page.at("changes")) out.push_back(e.at("seq"));
    return out;
  };

  auto all = pull(0, 10, 3);
  CHECK(seqs(all) == std::vector<std::int64_t>{3, 5});  // dev-b's :1 and dev-a's :4 stay
  CHECK(all.at("cursor") == 5);
  CHECK(all.at("more") == false);
  CHECK(seqs(pull(0, 10, 0)) == std::vector<std::int64_t>{1, 2, 3, 4, 5});

  // Left out counts as returned: pages end after the last entry read.
  auto first = pull(0, 1, 3);
  CHECK(seqs(first) == std::vector<std::int64_t>{3});
  CHECK(first.at("more") == true);
  CHECK(first.at("cursor") == 3);
  auto second = pull(3, 1, 3);
  CHECK(seqs(second) == std::vector<std::int64_t>{5});
  CHECK(second.at("more") == false);
  CHECK(second.at("cursor") == 5);

  // With echo false and a push: the push's own entry is left out too, and
  // another device asking with the same number leaves out only its own.
  auto with_push = pull(
      0, 10, 2, json::array({change("dev-a:5", record_id(6), {{"code", "c6"}, {"period", "1"}})}));
  CHECK(with_push.at("results").at(0).at("seq") == 6);
  CHECK(seqs(with_push) == std::vector<std::int64_t>{3, 4, 5});
  json body = {{"device_id", "dev-b"}, {"since", 0}, {"limit", 10}, {"omit_own_through", 9}};
  auto other = f.call("POST", "/v1/sync", body.dump(), f.bantan2);
  REQUIRE(other.status == 200);
  CHECK(seqs(json::parse(other.body)) == std::vector<std::int64_t>{1, 2, 4, 5, 6});

  SECTION("a page leaves out at most kMaxOwnPerPage, then ends with more") {
    const int n = static_cast<int>(PullOmit::kMaxOwnPerPage) + 2;
    for (int start = 0; start < n; start += 1000) {
      json batch = json::array();
      for (int i = start; i < std::min(n, start + 1000); ++i)
        batch.push_back(change("dev-a:" + std::to_string(100 + i), record_id(1000 + i),
                               {{"code", "k" + std::to_string(i)}, {"period", "1"}}));
      f.sync(f.bantan, "dev-a", batch, 0, 0);
    }
    const std::int64_t head = 6 + n;
    auto page = pull(6, 10, 1'000'000);
    CHECK(page.at("changes").empty());
    CHECK(page.at("more") == true);
    CHECK(page.at("cursor") == 6 + PullOmit::kMaxOwnPerPage);
    auto rest = pull(page.at("cursor"), 10, 1'000'000);
    CHECK(rest.at("changes").empty());
    CHECK(rest.at("more") == false);
    CHECK(rest.at("cursor") == head);
  }
  SECTION("not a whole number >= 0: 400, nothing pushed") {
    const auto before = f.stats().head_seq;
    for (json bad : {json(-1), json("3"), json(1.5)}) {
      json b = {{"device_id", "dev-a"},
                {"changes", json::array({change("dev-a:77", record_id(77), {{"code", "x"}})})},
                {"omit_own_through", bad}};
      auto res = f.call("POST", "/v1/sync", b.dump(), f.bantan);
      CHECK(res.status == 400);
      CHECK(json::parse(res.body).at("error").at("code") == "bad_request");
    }
    CHECK(f.stats().head_seq == before);
  }
}

TEST_CASE("since beyond the end of the log is 409 cursor_ahead and applies nothing",
          "[server][sync][pull]") {
  SyncFixture f;
  f.create(1);
  const auto head = f.stats().head_seq;
  json body = {
      {"device_id", "dev-a"},
      {"changes", json::array({change("dev-a:5", record_id(5), {{"code", "z"}, {"period", "1"}})})},
      {"since", head + 1}};
  auto r = f.call("POST", "/v1/sync", body.dump(), f.bantan);
  CHECK(r.status == 409);
  CHECK(json::parse(r.body)["error"]["code"] == "cursor_ahead");
  CHECK(f.stats().head_seq == head);
  CHECK(f.sync(f.bantan, "dev-a", json::array(), head)["cursor"] == head);
}

TEST_CASE("a change for an unpublished form is rejected unknown_form", "[server][sync][reject]") {
  SyncFixture f;
  json c = change("dev-a:1", record_id(1), {{"code", "x"}, {"period", "1"}});
  c["form"] = "kla-desa";
  auto r = f.sync(f.bantan, "dev-a", json::array({c}))["results"][0];
  CHECK(r["status"] == "rejected");
  CHECK(r["error"]["code"] == "unknown_form");
  CHECK(r["error"]["field"] == "form");
  CHECK(f.stats().records == 0);
}

TEST_CASE("GET /v1/records lists by version with paging, tombstones included",
          "[server][records]") {
  SyncFixture f;
  for (int i = 1; i <= 4; ++i) f.create(i, {}, "14.03.02.200" + std::to_string(i));
  auto v1 = f.record(1).row.version;
  f.sync(
      f.bantan, "dev-a",
      json::array({change("dev-a:50", record_id(1), {}, {{"", v1}}, "14.03.02.2001", "delete")}));
  auto first = json::parse(f.call("GET", "/v1/records?limit=2", {}, f.bantan).body);
  REQUIRE(first["records"].size() == 2);
  CHECK(first["more"] == true);
  CHECK(first["records"][0]["id"] == record_id(2));
  auto rest = json::parse(
      f.call("GET",
             "/v1/records?limit=10&since=" + std::to_string(first["cursor"].get<std::int64_t>()),
             {}, f.bantan)
          .body);
  REQUIRE(rest["records"].size() == 2);
  CHECK(rest["more"] == false);
  CHECK(rest["records"][1]["id"] == record_id(1));
  CHECK(rest["records"][1]["deleted"] == true);
  auto one = json::parse(f.call("GET", "/v1/records/" + record_id(3), {}, f.bantan).body);
  CHECK(one["fields"]["code"]["value"] == "14.03.02.2003");
  CHECK(one["fields"]["code"]["version"] == one["version"]);
  auto scoped = json::parse(f.call("GET", "/v1/records?scope=14.03.02.2003", {}, f.bantan).body);
  REQUIRE(scoped["records"].size() == 1);
  CHECK(f.call("GET", "/v1/records?since=-1", {}, f.bantan).status == 400);
  CHECK(f.call("GET", "/v1/records/" + record_id(99), {}, f.bantan).status == 404);
}
