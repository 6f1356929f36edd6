// Property test over many seeds extending the convergence one with administrators:
// real device stores (fieldsync::core) sync through Router::handle_request while
// an admin resolves random open conflicts in random ways. Afterwards all devices
// equal the server, no device keeps a review mark for a resolved conflict, and the
// history of every record accounts for every change exactly once.
#include <catch2/catch.hpp>

#include <random>
#include <set>

#include "fieldsync/store.hpp"
#include "fieldsync/sync.hpp"
#include "server_fixture.hpp"
#include "support/memory_transport.hpp"

using namespace fieldsync;
using namespace fieldsync::server;
using namespace fieldsync::server::test;

namespace {

struct SimDevice {
  std::string name;
  std::vector<std::string> villages;
  std::unique_ptr<Store> store;
  std::unique_ptr<fieldsync::testing::MemoryTransport> transport;
};

class AdminSimulation {
 public:
  AdminSimulation(ServerFixture& f, std::uint64_t seed) : f_(f), rng_(seed) {
    admin_ = f_.login("admin", "secret-password", "dev-console");
  }

  void add_device(const std::string& name, const std::string& user,
                  std::vector<std::string> villages) {
    SimDevice d;
    d.name = name;
    d.villages = std::move(villages);
    StoreOptions so;
    so.path = (f_.dir.path / (name + ".db")).string();
    auto opened = Store::open(so);
    REQUIRE(opened.ok());
    d.store = std::move(opened).value();
    ServerFixture* f = &f_;
    d.transport = std::make_unique<fieldsync::testing::MemoryTransport>(
        [f](const HttpRequest& r) -> Result<HttpResponse> {
          Request req;
          req.method = r.method;
          req.target = r.target;
          req.body = r.body;
          req.remote_address = "192.0.2.9";
          for (const auto& h : r.headers) req.headers.push_back(h);
          Response res = f->router->handle_request(req);
          return HttpResponse{res.status, res.headers, res.body};
        });
    REQUIRE(fieldsync::login(*d.store, *d.transport, user, "secret-password").ok());
    auto form = Form::parse(json::parse(f_.call("GET", "/v1/forms/survey", {}, admin_).body));
    REQUIRE(form.ok());
    REQUIRE(d.store->import_form(*form).ok());
    devices_.push_back(std::move(d));
  }

  void step() {
    SimDevice& d = devices_[pick(devices_.size())];
    const double roll = uniform();
    if (roll < 0.45) {
      edit(d);
    } else if (roll < 0.55) {
      remove(d);
    } else if (roll < 0.85) {
      sync(d);
    } else {
      resolve_random();
    }
  }

  void settle() {
    for (int pass = 0; pass < 3; ++pass)
      for (auto& d : devices_) sync(d);
  }

  // Resolves what can still be resolved, then settles.
  void resolve_all() {
    for (int i = 0; i < 200 && !open_conflicts().empty(); ++i) {
      bool progressed = false;
      for (const auto& c : open_conflicts()) progressed = resolve(c) || progressed;
      if (!progressed) break;
    }
    settle();
  }

  void check_converged() {
    RecordsQuery q;
    q.filter.all = true;
    q.limit = 1'000'000;
    auto page = f_.store->records(q);
    REQUIRE(page.ok());
    for (const auto& d : devices_) {
      CAPTURE(d.name);
      auto status = d.store->status();
      REQUIRE(status.ok());
      CHECK(status->pending == 0);
      RecordQuery all;
      all.include_deleted = true;
      auto mine = d.store->list(all);
      REQUIRE(mine.ok());
      std::map<std::string, const RecordView*> by_id;
      for (const auto& r : *mine)
        // Created and deleted before any sync: the server never heard of it.
        if (!(r.deleted && r.version == 0)) by_id[r.id] = &r;
      std::size_t in_scope = 0;
      for (const auto& s : page->records) {
        if (!covers(d, s.row.scope)) continue;
        ++in_scope;
        CAPTURE(s.row.id);
        REQUIRE(by_id.count(s.row.id) == 1);
        const RecordView& v = *by_id.at(s.row.id);
        CHECK(v.deleted == s.row.deleted);
        for (const auto& [name, field] : s.row.fields) {
          CAPTURE(name);
          auto it = v.fields.find(name);
          const json mine_value = it == v.fields.end() ? json() : it->second.value;
          CHECK(values_equal(mine_value, field.value));
        }
      }
      std::set<std::string> on_server;
      for (const auto& s : page->records) on_server.insert(s.row.id);
      for (const auto& [id, v] : by_id) {
        INFO(v->to_json().dump());
        CHECK(on_server.count(id) == 1);
      }
      CHECK(by_id.size() == in_scope);
    }
  }

  // A field or record under review on a device names a conflict still open on the
  // server; resolved conflicts leave no mark anywhere.
  void check_marks() {
    std::set<std::int64_t> open;
    for (const auto& c : open_conflicts()) open.insert(c["id"].get<std::int64_t>());
    for (const auto& d : devices_) {
      RecordQuery all;
      all.include_deleted = true;
      auto listed = d.store->list(all);
      REQUIRE(listed.ok());
      for (const auto& r : *listed)
        for (const auto& [name, f] : r.fields) {
          if (!f.under_review) continue;
          CAPTURE(d.name, r.id, name, f.conflict_id);
          CHECK(open.count(f.conflict_id) == 1);
        }
    }
  }

  // Every change a device made appears exactly once over all records' histories
  // (as the origin of one entry, or as a rejected change), and every other entry
  // is one of an admin's resolutions.
  void check_history() {
    std::multiset<std::string> made;
    for (const auto& d : devices_) {
      auto receipts = d.store->receipts();
      auto rejected = d.store->rejected();
      REQUIRE(receipts.ok());
      REQUIRE(rejected.ok());
      for (const auto& r : *receipts) made.insert(r.change_id);
      for (const auto& r : *rejected) made.insert(r.change.id);
    }
    std::set<std::string> made_once(made.begin(), made.end());
    CHECK(made_once.size() == made.size());

    RecordsQuery q;
    q.filter.all = true;
    q.limit = 1'000'000;
    auto page = f_.store->records(q);
    REQUIRE(page.ok());
    std::multiset<std::string> seen;
    std::map<std::int64_t, std::size_t> admin_entries;
    for (const auto& s : page->records) {
      auto res = f_.call("GET", "/v1/records/" + s.row.id + "/history", {}, admin_);
      REQUIRE(res.status == 200);
      const json h = json::parse(res.body);
      std::int64_t last = 0;
      for (const auto& e : h["entries"]) {
        CHECK(e["record"] == s.row.id);
        CHECK(e["seq"].get<std::int64_t>() > last);
        last = e["seq"];
        const std::string origin = e["origin"];
        if (origin.rfind("admin:admin:", 0) == 0)
          ++admin_entries[std::stoll(origin.substr(12))];
        else
          seen.insert(origin);
      }
      for (const auto& r : h["rejected"]) seen.insert(r["change_id"].get<std::string>());
      for (const auto& c : h["conflicts"])
        if (c["status"] == "resolved") CHECK(c["resolution"]["seqs"].size() >= 1);
    }
    std::set<std::string> seen_once(seen.begin(), seen.end());
    CHECK(seen_once.size() == seen.size());  // exactly once
    CHECK(seen_once == made_once);
    // Every admin entry belongs to a resolved conflict, as many as it lists.
    for (const auto& [cid, n] : admin_entries) {
      auto c = f_.store->conflict(cid);
      REQUIRE(c.ok());
      REQUIRE(c->has_value());
      CHECK((*c)->status == "resolved");
      CHECK((*c)->resolution["seqs"].size() == n);
    }
    total_changes += made.size();
    total_resolutions += resolved_;
  }

  std::size_t total_changes = 0;
  std::size_t total_resolutions = 0;

 private:
  std::size_t pick(std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_);
  }
  double uniform() { return std::uniform_real_distribution<double>(0, 1)(rng_); }

  static bool covers(const SimDevice& d, const std::string& scope) {
    if (d.name == "dev-admin") return true;
    for (const auto& v : d.villages)
      if (scope_covers(v.substr(0, 8), scope)) return true;
    return false;
  }

  std::vector<RecordView> live(const SimDevice& d) {
    RecordQuery q;
    q.form = "survey";
    auto list = d.store->list(q);
    REQUIRE(list.ok());
    return *list;
  }

  void edit(SimDevice& d) {
    auto records = live(d);
    PutRequest p;
    p.form = "survey";
    if (records.empty() || uniform() < 0.3) {
      p.scope = d.villages[pick(d.villages.size())];
      p.fields = {{"code", "K" + std::to_string(pick(3))}, {"period", "2026"}};
    } else {
      p.record = records[pick(records.size())].id;
    }
    p.fields["count"] = static_cast<int>(pick(4));
    if (uniform() < 0.4) p.fields["flag"] = uniform() < 0.5;
    if (uniform() < 0.2) p.fields["note"] = std::string(1, static_cast<char>('a' + pick(3)));
    auto r = d.store->put(p);
    INFO((r ? std::string() : r.error().to_string()));
    REQUIRE(r.ok());
  }

  void remove(SimDevice& d) {
    auto records = live(d);
    if (records.empty()) return;
    REQUIRE(d.store->remove(records[pick(records.size())].id).ok());
  }

  void sync(SimDevice& d) {
    SyncOptions o;
    o.batch_size = 1 + static_cast<std::int64_t>(pick(4));
    o.pull_limit = std::vector<std::int64_t>{1, 3, 50}[pick(3)];
    o.max_attempts = 1;
    o.jitter_seed = 1;
    auto r = fieldsync::sync(*d.store, *d.transport, o);
    INFO((r ? std::string() : r.error().to_string()));
    REQUIRE(r.ok());
  }

  json open_conflicts() {
    auto res = f_.call("GET", "/v1/conflicts?status=open&limit=1000", {}, admin_);
    REQUIRE(res.status == 200);
    return json::parse(res.body)["conflicts"];
  }

  void resolve_random() {
    const json open = open_conflicts();
    if (open.empty()) return;
    resolve(open[pick(open.size())]);
  }

  // A random valid resolution of `c`; true when it was resolved.
  bool resolve(const json& c) {
    const std::string kind = c["kind"];
    const std::size_t n = c["candidates"].size();
    json body;
    if (kind == "field") {
      const double r = uniform();
      if (r < 0.3 || n == 0)
        body = {{"keep", "server"}};
      else if (r < 0.7)
        body = {{"keep", "candidate"}, {"candidate", pick(n)}};
      else
        body = {{"value", c["field"] == "count" ? json(static_cast<int>(pick(4)))
                                                : c["candidates"][0]["value"]}};
    } else if (kind == "delete") {
      const double r = uniform();
      if (r < 0.4)
        body = {{"keep", "deleted"}};
      else if (r < 0.6 || n == 0)
        body = {{"keep", "record"}};
      else {
        std::vector<std::size_t> upserts;  // only an upsert's fields can be kept
        for (std::size_t i = 0; i < n; ++i)
          if (c["candidates"][i]["op"] == "upsert") upserts.push_back(i);
        body = {{"keep", "record"}};
        if (!upserts.empty()) body["candidate"] = upserts[pick(upserts.size())];
      }
    } else {
      // Only a live record can be merged into.
      std::vector<std::string> live;
      for (const auto& r : c["records"]) {
        auto rec = f_.store->record(r.get<std::string>());
        REQUIRE(rec.ok());
        if (*rec && !(*rec)->row.deleted) live.push_back(r.get<std::string>());
      }
      if (live.empty() || uniform() < 0.5)
        body = {{"keep", "both"}};
      else
        body = {{"merge_into", live[pick(live.size())]}};
    }
    if (uniform() < 0.3) body["note"] = "checked";
    auto res =
        f_.call("POST", "/v1/conflicts/" + std::to_string(c["id"].get<std::int64_t>()) + "/resolve",
                body.dump(), admin_);
    INFO(c.dump() << " with " << body.dump() << " -> " << res.body);
    // A field conflict on a record deleted since cannot be resolved (409 deleted).
    REQUIRE((res.status == 200 || res.status == 409));
    if (res.status == 200) ++resolved_;
    return res.status == 200;
  }

  ServerFixture& f_;
  std::mt19937_64 rng_;
  std::string admin_;
  std::vector<SimDevice> devices_;
  std::size_t resolved_ = 0;
};

}  // namespace

TEST_CASE(
    "property: with admin resolutions interleaved, devices converge and history "
    "accounts for every change once",
    "[server][property][admin]") {
  constexpr std::uint64_t kSeeds = 25;
  constexpr int kSteps = 90;
  std::size_t changes = 0, resolutions = 0;
  for (std::uint64_t seed = 1; seed <= kSeeds; ++seed) {
    CAPTURE(seed);
    ServerFixture f;
    f.add_user("officer.bantan", "officer", {"14.03.02"});
    f.add_user("officer.bengkalis", "officer", {"14.03.01"});
    f.add_user("admin", "admin", {});
    AdminSimulation sim(f, seed);
    sim.add_device("dev-a", "officer.bantan", {"14.03.02.2001", "14.03.02.2002"});
    sim.add_device("dev-b", "officer.bantan", {"14.03.02.2001"});
    sim.add_device("dev-c", "officer.bengkalis", {"14.03.01.2001"});
    sim.add_device("dev-admin", "admin", {"14.03.01.2001", "14.03.02.2002"});
    for (int i = 0; i < kSteps; ++i) sim.step();
    sim.settle();
    sim.check_converged();
    sim.check_marks();
    sim.resolve_all();
    sim.check_converged();
    sim.check_marks();
    sim.check_history();
    changes += sim.total_changes;
    resolutions += sim.total_resolutions;
  }
  CHECK(changes > kSeeds * 15);
  CHECK(resolutions > kSeeds);
}
