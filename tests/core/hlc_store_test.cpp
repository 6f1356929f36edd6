// The store's hybrid logical clock: strictly increasing across saves, reopening
// and a phone clock that jumps backwards; pulled timestamps push it forward.
#include "fieldsync/ids.hpp"
#include "store_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;
using namespace fieldsync::store_tests;

TEST_CASE("HLC stays monotonic across reopen when the wall clock jumps back", "[core][hlc]") {
  TempDir dir;
  std::string path = dir.file("a.db");
  std::int64_t wall = 1'800'000'000'000;  // 2027
  auto clock = [&] { return wall; };
  std::vector<Hlc> stamps;
  auto collect = [&](Store& s) {
    auto out = s.outbox();
    REQUIRE(out.ok());
    stamps.clear();
    for (const auto& e : *out) stamps.push_back(*Hlc::parse(e.change.hlc));
  };
  {
    auto s = open_store(path, clock);
    REQUIRE(s->import_form(survey_form()).ok());
    for (int i = 0; i < 5; ++i) {
      REQUIRE(s->put(new_record({{"name", "a"}})).ok());
      wall += 10;
    }
    wall -= 3'600'000;  // the phone's clock is set back an hour
    for (int i = 0; i < 5; ++i) REQUIRE(s->put(new_record({{"name", "b"}})).ok());
  }
  wall -= 86'400'000;  // and a day further back before the app restarts
  {
    auto s = open_store(path, clock);
    for (int i = 0; i < 5; ++i) REQUIRE(s->put(new_record({{"name", "c"}})).ok());
    collect(*s);
  }
  REQUIRE(stamps.size() == 15);
  for (std::size_t i = 1; i < stamps.size(); ++i) CHECK(stamps[i - 1] < stamps[i]);
  CHECK(stamps.back().millis == stamps[4].millis);  // held at the latest time seen
}

TEST_CASE("pulled timestamps move the clock forward", "[core][hlc]") {
  TempDir dir;
  std::int64_t wall = 1'800'000'000'000;
  auto s = open_store(dir.file("a.db"), [&] { return wall; });
  REQUIRE(s->import_form(survey_form()).ok());
  Hlc remote{wall + 3'600'000, 7};  // another phone an hour ahead
  LogEntry e;
  e.seq = 1;
  e.record = new_uuid_v7();
  e.form = "survey";
  e.form_version = 1;
  e.scope = "14.03";
  e.op = "upsert";
  e.fields = {{"name", "r"}};
  e.hlc = remote.to_string();
  SyncResponse resp;
  resp.changes = {e};
  resp.cursor = 1;
  REQUIRE(s->apply_sync({}, resp).ok());
  REQUIRE(s->put(new_record({{"name", "x"}})).ok());
  CHECK(*Hlc::parse(s->outbox()->at(0).change.hlc) > remote);
}
