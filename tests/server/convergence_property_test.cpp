// Property test over many seeds: several simulated devices edit offline (creates,
// edits, deletes, invalid values, duplicate keys), sync in random interleavings
// with lost responses and small pull pages. Afterwards:
//  - every change a device made ended exactly once, as applied, as a conflict (a
//    candidate in each conflict it names) or as rejected (in the quarantine), and
//    the device holds the same answer as the server;
//  - every device's data equals the server's for its scopes (values and versions).
// The devices are modelled here (synced state + outbox, as design.md describes),
// independent of fieldsync::core.
#include <catch2/catch.hpp>

#include <deque>
#include <random>
#include <set>

#include "server_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::server;
using namespace fieldsync::server::test;

namespace {

struct SimField {
  json value;
  std::int64_t version = 0;
};

struct SimRecord {
  std::string scope;
  bool deleted = false;
  std::int64_t version = 0;
  std::map<std::string, SimField> fields;
};

struct Pending {
  json change;
  bool attempted = false;
};

struct SimDevice {
  std::string id;
  std::string token;
  std::vector<std::string> villages;  // where it creates records
  std::int64_t counter = 0;
  std::int64_t cursor = 0;
  std::map<std::string, SimRecord> synced;  // the server's state as this device knows it
  std::deque<Pending> outbox;
  std::map<std::string, json> results;  // change id -> the answer kept
  std::set<std::string> made;           // every change id sent at least once
  std::map<std::string, json> sent;     // change id -> its content (fixed once sent)
};

class Simulation {
 public:
  Simulation(ServerFixture& f, std::uint64_t seed) : f_(f), rng_(seed) {}

  void add_device(const std::string& id, const std::string& user,
                  std::vector<std::string> villages) {
    SimDevice d;
    d.id = id;
    d.token = f_.login(user, "secret-password", id);
    d.villages = std::move(villages);
    devices_.push_back(std::move(d));
  }

  void step() {
    SimDevice& d = devices_[pick(devices_.size())];
    if (chance(0.6)) {
      edit(d);
    } else {
      sync_round(d, chance(0.15));
    }
  }

  // Syncs every device until its outbox is empty and nothing more is pulled, twice
  // round so that each sees what the others pushed last.
  void settle() {
    for (int pass = 0; pass < 2; ++pass)
      for (auto& d : devices_) {
        for (int i = 0; i < 1000; ++i) {
          bool more = sync_round(d, false);
          if (d.outbox.empty() && !more) break;
          REQUIRE(i < 999);
        }
      }
  }

  void check_exactly_once() {
    const auto log = f_.log();
    std::map<std::string, int> origins;
    for (const auto& e : log) ++origins[e.origin];
    auto quarantine = f_.store->quarantine(0, 1'000'000);
    REQUIRE(quarantine.ok());
    std::map<std::string, int> quarantined;
    for (const auto& q : *quarantine) ++quarantined[q.change_id];

    std::size_t made = 0;
    for (const auto& d : devices_) {
      for (const auto& id : d.made) {
        CAPTURE(id);
        ++made;
        REQUIRE(d.results.count(id) == 1);
        const json& r = d.results.at(id);
        auto processed = f_.store->processed(id);
        REQUIRE(processed.ok());
        REQUIRE(processed->has_value());
        // The processed row keeps the first answer with the versions equal to
        // its seq left out (they are put back for a replay).
        json server_answer = (*processed)->result;
        auto device_answer = ChangeResult::from_json(r);
        REQUIRE(device_answer.ok());
        device_answer->replayed = false;
        CHECK(server_answer == device_answer->to_json(/*compact=*/true));
        const std::string status = r["status"];
        if (status == "rejected") {
          CHECK(origins[id] == 0);
          CHECK(quarantined[id] == 1);
        } else {
          CHECK(origins[id] == 1);
          CHECK(quarantined[id] == 0);
          if (status == "conflict") {
            REQUIRE(r.contains("conflicts"));
            for (const auto& ref : r["conflicts"]) {
              auto c = f_.store->conflict(ref["id"].get<std::int64_t>());
              REQUIRE(c.ok());
              REQUIRE(c->has_value());
              int candidates = 0;
              for (const auto& k : (*c)->candidates) candidates += k.change == id;
              CHECK(candidates == 1);
            }
          } else {
            CHECK(status == "applied");
          }
        }
      }
    }
    // Nothing on the server that no device sent.
    std::size_t accounted = 0;
    for (const auto& [origin, n] : origins) accounted += static_cast<std::size_t>(n);
    for (const auto& [id, n] : quarantined) accounted += static_cast<std::size_t>(n);
    CHECK(accounted == made);
    CHECK(made > 0);
  }

  // No silent overwrite: a field is only ever set by a change whose base for it
  // was the field's version at that moment (the seq that set it before, or 0).
  void check_no_silent_overwrite() {
    std::map<std::string, json> sent;
    for (const auto& d : devices_) sent.insert(d.sent.begin(), d.sent.end());
    std::map<std::pair<std::string, std::string>, std::int64_t> version;
    std::size_t sets = 0;
    for (const auto& e : f_.log()) {
      CAPTURE(e.origin);
      REQUIRE(sent.count(e.origin) == 1);
      const json& c = sent.at(e.origin);
      for (const auto& [name, value] : e.fields.items()) {
        CAPTURE(name);
        auto& v = version[{e.record, name}];
        CHECK(c["base"].value(name, std::int64_t{0}) == v);
        CHECK(values_equal(c["fields"][name], value));
        v = e.seq;
        ++sets;
      }
    }
    CHECK(sets > 0);
  }

  void check_converged() {
    for (const auto& d : devices_) {
      CAPTURE(d.id);
      REQUIRE(d.outbox.empty());
      RecordsQuery q;
      q.filter.all = d.id == "dev-admin";
      if (!q.filter.all) q.filter.scopes = scopes_of(d);
      q.limit = 1'000'000;
      auto page = f_.store->records(q);
      REQUIRE(page.ok());
      std::set<std::string> server_ids;
      for (const auto& s : page->records) {
        server_ids.insert(s.row.id);
        CAPTURE(s.row.id);
        REQUIRE(d.synced.count(s.row.id) == 1);
        const SimRecord& mine = d.synced.at(s.row.id);
        CHECK(mine.deleted == s.row.deleted);
        CHECK(mine.scope == s.row.scope);
        CHECK(mine.version == s.row.version);
        REQUIRE(mine.fields.size() == s.row.fields.size());
        for (const auto& [name, field] : s.row.fields) {
          CAPTURE(name);
          REQUIRE(mine.fields.count(name) == 1);
          CHECK(values_equal(mine.fields.at(name).value, field.value));
          CHECK(mine.fields.at(name).version == field.version);
        }
      }
      std::set<std::string> device_ids;
      for (const auto& [id, rec] : d.synced) device_ids.insert(id);
      CHECK(device_ids == server_ids);
    }
  }

  std::size_t total_made() const {
    std::size_t n = 0;
    for (const auto& d : devices_) n += d.made.size();
    return n;
  }

 private:
  std::size_t pick(std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_);
  }
  bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }

  std::vector<std::string> scopes_of(const SimDevice& d) {
    std::vector<std::string> out;
    for (const auto& v : d.villages) out.push_back(v.substr(0, 8));  // the kecamatan
    return out;
  }

  // The record as the officer sees it: the synced state with the outbox on top.
  std::optional<SimRecord> visible(const SimDevice& d, const std::string& record) {
    std::optional<SimRecord> r;
    if (auto it = d.synced.find(record); it != d.synced.end()) r = it->second;
    for (const auto& p : d.outbox) {
      if (p.change["record"] != record) continue;
      if (!r) {
        r = SimRecord{};
        r->scope = p.change["scope"];
      }
      if (p.change["op"] == "delete") {
        r->deleted = true;
      } else {
        r->deleted = false;
        for (const auto& [k, v] : p.change["fields"].items()) r->fields[k].value = v;
      }
    }
    return r;
  }

  json random_value(const std::string& field) {
    if (field == "count")
      return chance(0.06) ? json(5000) : json(static_cast<int>(pick(4)));  // 5000 is invalid
    if (field == "note")
      return chance(0.3) ? json(nullptr) : json(std::string(1, static_cast<char>('a' + pick(3))));
    if (field == "flag") return chance(0.5);
    if (field == "tags") {
      std::vector<std::string> all = {"a", "b", "c"};
      std::shuffle(all.begin(), all.end(), rng_);
      all.resize(pick(4));
      return all;
    }
    if (field == "code")
      return chance(0.04) ? json(nullptr) : json(std::string("K") + std::to_string(pick(2)));
    return chance(0.5) ? "2026" : "2025";  // period
  }

  void edit(SimDevice& d) {
    std::vector<std::string> live;
    std::set<std::string> ids;
    for (const auto& [id, r] : d.synced) ids.insert(id);
    for (const auto& p : d.outbox) ids.insert(p.change["record"]);
    for (const auto& id : ids)
      if (auto r = visible(d, id); r && !r->deleted) live.push_back(id);

    const double roll = std::uniform_real_distribution<double>(0, 1)(rng_);
    if (live.empty() || roll < 0.25) {
      json fields = {{"code", "K" + std::to_string(pick(2))}, {"period", "2026"}};
      if (chance(0.5)) fields["count"] = random_value("count");
      if (chance(0.3)) fields["tags"] = random_value("tags");
      append(d, record_id(next_record_++), d.villages[pick(d.villages.size())], "upsert", fields);
    } else if (roll < 0.85) {
      static const std::vector<std::string> names = {"count", "note", "flag",
                                                     "tags",  "code", "period"};
      json fields = json::object();
      const std::size_t n = 1 + pick(3);
      for (std::size_t i = 0; i < n; ++i) {
        const std::string& name = names[pick(names.size())];
        fields[name] = random_value(name);
      }
      const std::string& id = live[pick(live.size())];
      append(d, id, visible(d, id)->scope, "upsert", fields);
    } else {
      const std::string& id = live[pick(live.size())];
      append(d, id, visible(d, id)->scope, "delete", json::object());
    }
  }

  // Appends a save to the outbox, coalescing an upsert into the record's last
  // unsent upsert (the way the device store does).
  void append(SimDevice& d, const std::string& record, const std::string& scope,
              const std::string& op, const json& fields) {
    const SimRecord* s = nullptr;
    if (auto it = d.synced.find(record); it != d.synced.end()) s = &it->second;
    auto base_of = [&](const std::string& f) -> std::int64_t {
      if (!s) return 0;
      auto it = s->fields.find(f);
      return it == s->fields.end() ? 0 : it->second.version;
    };
    Pending* last = nullptr;
    for (auto& p : d.outbox)
      if (p.change["record"] == record) last = &p;
    if (op == "upsert" && last && !last->attempted && last->change["op"] == "upsert") {
      for (const auto& [k, v] : fields.items()) {
        if (!last->change["base"].contains(k)) last->change["base"][k] = base_of(k);
        last->change["fields"][k] = v;
      }
      return;
    }
    json c = {{"id", d.id + ":" + std::to_string(++d.counter)},
              {"record", record},
              {"form", "survey"},
              {"scope", scope},
              {"op", op},
              {"hlc", hlc_at(kStartMs + d.counter * 10, 0)},
              {"base", {{"", s ? s->version : 0}}}};
    if (op == "upsert") {
      c["fields"] = fields;
      for (const auto& [k, v] : fields.items()) c["base"][k] = base_of(k);
    }
    d.outbox.push_back(Pending{c, false});
  }

  // One round trip. `lose` drops the answer after the server handled it (the
  // device retries the same changes later). Returns the server's `more`.
  bool sync_round(SimDevice& d, bool lose) {
    json batch = json::array();
    std::set<std::string> in_batch;
    for (auto& p : d.outbox) {
      if (batch.size() >= 5 || in_batch.count(p.change["record"])) break;
      in_batch.insert(p.change["record"]);
      p.attempted = true;
      batch.push_back(p.change);
      d.made.insert(p.change["id"].get<std::string>());
      auto [it, first] = d.sent.emplace(p.change["id"].get<std::string>(), p.change);
      REQUIRE(it->second == p.change);  // a change never changes once sent
    }
    const std::int64_t limit = std::vector<std::int64_t>{1, 2, 3, 50}[pick(4)];
    json answer = f_.sync(d.token, d.id, batch, d.cursor, limit);
    if (lose) return true;

    REQUIRE(answer["results"].size() == batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i) take_result(d, batch[i], answer["results"][i]);
    for (const auto& e : answer["changes"]) take_entry(d, e);
    CHECK(answer["cursor"].get<std::int64_t>() >= d.cursor);
    d.cursor = answer["cursor"];
    return answer["more"];
  }

  void take_result(SimDevice& d, const json& sent, const json& r) {
    const std::string id = sent["id"];
    REQUIRE(r["id"] == id);
    REQUIRE(d.results.count(id) == 0);
    d.results[id] = r;
    REQUIRE(!d.outbox.empty());
    REQUIRE(d.outbox.front().change["id"] == id);  // batches are outbox prefixes
    d.outbox.pop_front();
    const std::string status = r["status"];
    if (status == "rejected") return;

    const std::string record = sent["record"];
    const std::int64_t seq = r["seq"];
    SimRecord& rec = d.synced[record];
    rec.scope = sent["scope"];
    std::set<std::string> conflicted;
    bool record_conflict = false;
    const json refs = r.value("conflicts", json::array());
    for (const auto& c : refs) {
      if (c["kind"] == "field") conflicted.insert(c["field"].get<std::string>());
      if (c["kind"] == "delete") record_conflict = true;
    }
    if (sent["op"] == "delete") {
      if (status == "applied") {
        rec.deleted = true;
        rec.version = std::max(rec.version, seq);
      }
      return;
    }
    if (record_conflict) return;  // nothing applied: the record was deleted
    bool any_set = false;
    json rebase = json::object();
    for (const auto& [name, value] : sent["fields"].items()) {
      if (conflicted.count(name)) continue;
      const std::int64_t v = r["versions"][name];
      SimField& f = rec.fields[name];
      if (v > f.version) f = SimField{value, v};
      any_set = any_set || v == seq;
      rebase[name] = v;
    }
    if (any_set) rec.version = std::max(rec.version, seq);
    // Later unsent changes of this record were built on this change's values.
    for (auto& p : d.outbox) {
      if (p.change["record"] != record || p.change["op"] != "upsert") continue;
      REQUIRE(!p.attempted);
      for (const auto& [name, v] : rebase.items())
        if (p.change["base"].contains(name) && sent["base"].contains(name) &&
            p.change["base"][name] == sent["base"][name])
          p.change["base"][name] = v;
    }
  }

  void take_entry(SimDevice& d, const json& e) {
    SimRecord& rec = d.synced[e["record"].get<std::string>()];
    rec.scope = e["scope"];
    const std::int64_t seq = e["seq"];
    if (e["op"] == "delete") {
      rec.deleted = true;
      rec.version = std::max(rec.version, seq);
      return;
    }
    for (const auto& [name, value] : e["fields"].items()) {
      SimField& f = rec.fields[name];
      if (seq > f.version) f = SimField{value, seq};
    }
    if (!e["fields"].empty()) rec.version = std::max(rec.version, seq);
  }

  ServerFixture& f_;
  std::mt19937_64 rng_;
  std::vector<SimDevice> devices_;
  int next_record_ = 1;
};

}  // namespace

TEST_CASE("property: every change ends exactly once and devices converge", "[server][property]") {
  constexpr std::uint64_t kSeeds = 40;
  constexpr int kSteps = 150;
  std::size_t changes = 0;
  for (std::uint64_t seed = 1; seed <= kSeeds; ++seed) {
    CAPTURE(seed);
    ServerFixture f;
    f.add_user("officer.bantan", "officer", {"14.03.02"});
    f.add_user("officer.bengkalis", "officer", {"14.03.01"});
    f.add_user("admin", "admin", {});
    Simulation sim(f, seed);
    sim.add_device("dev-a", "officer.bantan", {"14.03.02.2001", "14.03.02.2002"});
    sim.add_device("dev-b", "officer.bantan", {"14.03.02.2001"});
    sim.add_device("dev-c", "officer.bengkalis", {"14.03.01.2001"});
    sim.add_device("dev-admin", "admin", {"14.03.01.2001", "14.03.02.2002"});
    for (int i = 0; i < kSteps; ++i) sim.step();
    sim.settle();
    sim.check_exactly_once();
    sim.check_no_silent_overwrite();
    sim.check_converged();
    changes += sim.total_made();
  }
  CHECK(changes > kSeeds * 20);
}
