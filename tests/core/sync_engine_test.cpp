// The sync engine (sync.hpp) over an in-memory transport to the reference server:
// login, full syncs, retries with backoff on 503 / 429 / transport errors, a lost
// answer replayed, cancellation, progress reports, and errors that stop the sync.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <numeric>
#include <thread>

#include "reference_server.hpp"
#include "store_fixture.hpp"
#include "support/memory_transport.hpp"

#include "fieldsync/sync.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;
using namespace fieldsync::store_tests;
using namespace std::chrono_literals;

namespace {

struct Rig {
  TempDir dir;
  ReferenceServer server{{survey_form()}};
  std::unique_ptr<Store> store = open_with_form(dir.file("device.db"));
  // Faults to inject, consumed one per request before the server sees it.
  std::vector<std::function<std::optional<Result<HttpResponse>>(const HttpRequest&)>> faults;
  MemoryTransport transport{[this](const HttpRequest& r) -> Result<HttpResponse> {
    if (!faults.empty()) {
      auto f = faults.front();
      faults.erase(faults.begin());
      if (auto answer = f(r)) return *answer;
    }
    return server.handle(r);
  }};
  std::vector<std::chrono::milliseconds> slept;
  SyncOptions options;

  Rig() {
    options.sleep = [this](std::chrono::milliseconds d) { slept.push_back(d); };
    options.jitter_seed = 7;
    options.backoff_initial = 200ms;
    REQUIRE(login(*store, transport, "officer.bantan", "secret").ok());
    transport.requests.clear();
  }
  void save(int n) {
    for (int i = 0; i < n; ++i)
      REQUIRE(store->put(new_record({{"name", "r" + std::to_string(i)}})).ok());
  }
  std::int64_t total_sleep() const {
    return std::accumulate(
        slept.begin(), slept.end(), std::int64_t{0},
        [](std::int64_t a, std::chrono::milliseconds d) { return a + d.count(); });
  }
};

HttpResponse status_only(int status, std::string code, std::string retry_after = {}) {
  HttpResponse r;
  r.status = status;
  r.body = error_body(code, "injected").dump();
  if (!retry_after.empty()) r.headers.push_back({"retry-after", retry_after});
  return r;
}

auto fail_with(HttpResponse r) {
  return [r](const HttpRequest&) -> std::optional<Result<HttpResponse>> {
    return Result<HttpResponse>(r);
  };
}
auto drop(Errc code) {
  return [code](const HttpRequest&) -> std::optional<Result<HttpResponse>> {
    return Result<HttpResponse>(Error(code, "injected"));
  };
}

}  // namespace

TEST_CASE("login stores the session, and wrong credentials are refused", "[core][sync][login]") {
  TempDir dir;
  ReferenceServer server;
  auto store = open_with_form(dir.file("a.db"));
  MemoryTransport t([&](const HttpRequest& r) -> Result<HttpResponse> { return server.handle(r); });

  auto bad = login(*store, t, "officer", "wrong");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::unauthorized);
  CHECK_FALSE(store->setting("token")->has_value());

  auto ok = login(*store, t, "officer", "secret", 5s);
  REQUIRE(ok.ok());
  CHECK(ok->token == server.token);
  CHECK(store->setting("token")->value() == server.token);
  CHECK(store->setting("user")->value() == "officer");
  CHECK(store->setting("role")->value() == "officer");
  CHECK(json::parse(store->setting("scopes")->value()) == json({"14"}));
  CHECK(store->status()->user == "officer");
  const HttpRequest& req = t.requests.back();
  CHECK(req.target == "/v1/login");
  CHECK(json::parse(req.body)["device_id"] == store->device_id());
  CHECK(t.timeouts.back() == 5s);

  MemoryTransport throttled([&](const HttpRequest&) -> Result<HttpResponse> {
    return status_only(429, "too_many_requests", "30");
  });
  CHECK(login(*store, throttled, "officer", "secret").error().code == Errc::throttled);
}

TEST_CASE("sync pushes everything and pulls until the server has no more", "[core][sync]") {
  Rig rig;
  rig.save(7);
  // Another device's entries to pull.
  ReferenceServer& server = rig.server;
  std::vector<Change> other;
  for (int i = 0; i < 5; ++i) {
    Change c;
    c.id = "other-device:" + std::to_string(i + 1);
    c.record = "0193a1c2-0000-7000-8000-00000000000" + std::to_string(i);
    c.form = "survey";
    c.form_version = 1;
    c.scope = "14.03.02";
    c.fields = {{"name", "theirs"}};
    c.hlc = "2026-11-28T09:14:03.120Z/0001";
    other.push_back(c);
  }
  server.sync("other-device", other, 0, 0);

  std::vector<SyncProgress> reports;
  rig.options.batch_size = 3;
  rig.options.pull_limit = 4;
  rig.options.on_progress = [&](const SyncProgress& p) { reports.push_back(p); };
  auto p = sync(*rig.store, rig.transport, rig.options);
  REQUIRE(p.ok());
  CHECK(p->sent == 7);
  CHECK(p->applied == 7);
  CHECK(p->conflicts == 0);
  CHECK(p->rejected == 0);
  CHECK(p->received == 12);  // 5 of the other device, 7 of our own
  CHECK(p->retries == 0);
  CHECK(p->cursor == 12);
  CHECK(p->round_trips == static_cast<std::int64_t>(rig.transport.requests.size()));
  CHECK(p->round_trips == 3);  // 3+3+1 changes; the last answer had everything
  CHECK(p->bytes_up > 0);
  CHECK(p->bytes_down > 0);
  REQUIRE(reports.size() == static_cast<std::size_t>(p->round_trips));
  for (std::size_t i = 1; i < reports.size(); ++i)
    CHECK(reports[i].round_trips == reports[i - 1].round_trips + 1);
  CHECK(rig.store->outbox()->empty());
  CHECK(rig.store->list({})->size() == 12);
  CHECK(*rig.store->cursor() == 12);

  for (const auto& req : rig.transport.requests) {
    CHECK(req.method == "POST");
    CHECK(req.target == "/v1/sync");
    bool auth = false, type = false, agent = false;
    for (const auto& [k, v] : req.headers) {
      auth = auth || (k == "Authorization" && v == "Bearer " + server.token);
      type = type || (k == "Content-Type" && v == "application/json");
      agent = agent || (k == "User-Agent" && v == rig.options.user_agent);
    }
    CHECK(auth);
    CHECK(type);
    CHECK(agent);
    CHECK(json::parse(req.body)["changes"].size() <= 3);
    CHECK(json::parse(req.body)["limit"] == 4);
  }

  SECTION("a second sync is one quiet round trip") {
    rig.transport.requests.clear();
    auto again = sync(*rig.store, rig.transport, rig.options);
    REQUIRE(again.ok());
    CHECK(again->round_trips == 1);
    CHECK(json::parse(rig.transport.requests[0].body)["since"] == 12);
  }
}

TEST_CASE("transient failures are retried with exponential backoff", "[core][sync][retry]") {
  Rig rig;
  rig.save(2);
  rig.faults = {fail_with(status_only(503, "unavailable")), drop(Errc::network),
                fail_with(status_only(500, "internal"))};
  auto p = sync(*rig.store, rig.transport, rig.options);
  REQUIRE(p.ok());
  CHECK(p->retries == 3);
  CHECK(p->applied == 2);
  CHECK(rig.store->outbox()->empty());
  // The same request every time.
  REQUIRE(rig.transport.requests.size() == 4);
  for (const auto& r : rig.transport.requests) CHECK(r.body == rig.transport.requests[0].body);
  // Delays: 200, 400, 800 ms steps with equal jitter (half fixed, half random).
  std::int64_t total = rig.total_sleep();
  CHECK(total >= 100 + 200 + 400);
  CHECK(total <= 200 + 400 + 800);
  for (auto d : rig.slept) CHECK(d <= 50ms);  // slept in small slices
}

TEST_CASE("429 waits as long as Retry-After says", "[core][sync][retry]") {
  Rig rig;
  rig.save(1);
  rig.faults = {fail_with(status_only(429, "too_many_requests", "3"))};
  auto p = sync(*rig.store, rig.transport, rig.options);
  REQUIRE(p.ok());
  CHECK(rig.total_sleep() == 3000);
  CHECK(p->retries == 1);
}

TEST_CASE("a lost answer is harmless: the resent batch is replayed", "[core][sync][retry]") {
  Rig rig;
  rig.save(3);
  // The server processes the request, but the answer never arrives.
  rig.faults = {[&](const HttpRequest& r) -> std::optional<Result<HttpResponse>> {
    rig.server.handle(r);
    return Result<HttpResponse>(Error(Errc::timeout, "answer lost"));
  }};
  auto p = sync(*rig.store, rig.transport, rig.options);
  REQUIRE(p.ok());
  CHECK(p->retries == 1);
  CHECK(p->applied == 3);
  CHECK(rig.store->outbox()->empty());
  for (const auto& [id, n] : rig.server.processed) CHECK(n == 1);
  CHECK(rig.server.processed.size() == 3);
  for (const auto& [id, r] : rig.server.results) CHECK(r.status == "applied");
  CHECK(rig.server.log.size() == 3);
}

TEST_CASE("errors that retrying cannot fix stop the sync", "[core][sync]") {
  Rig rig;
  rig.save(1);
  SECTION("401") {
    rig.faults = {fail_with(status_only(401, "unauthorized"))};
    auto p = sync(*rig.store, rig.transport, rig.options);
    REQUIRE_FALSE(p.ok());
    CHECK(p.error().code == Errc::unauthorized);
    CHECK(rig.transport.requests.size() == 1);
  }
  SECTION("not logged in") {
    REQUIRE(rig.store->set_setting("token", "").ok());
    auto p = sync(*rig.store, rig.transport, rig.options);
    CHECK(p.error().code == Errc::unauthorized);
    CHECK(rig.transport.requests.empty());
  }
  SECTION("other 4xx") {
    rig.faults = {fail_with(status_only(403, "forbidden"))};
    CHECK(sync(*rig.store, rig.transport, rig.options).error().code == Errc::forbidden);
  }
  SECTION("TLS failure") {
    rig.faults = {drop(Errc::tls)};
    CHECK(sync(*rig.store, rig.transport, rig.options).error().code == Errc::tls);
    CHECK(rig.transport.requests.size() == 1);
  }
  SECTION("a garbled answer") {
    HttpResponse garbled;
    garbled.status = 200;
    garbled.body = "{\"results\": 7";
    rig.faults = {fail_with(garbled)};
    CHECK(sync(*rig.store, rig.transport, rig.options).error().code == Errc::protocol);
  }
  SECTION("options out of range") {
    for (int in_flight : {0, 9}) {
      rig.options.in_flight = in_flight;
      CHECK(sync(*rig.store, rig.transport, rig.options).error().code == Errc::invalid_argument);
    }
    rig.options.in_flight = 2;
    rig.options.batch_size = 0;
    CHECK(sync(*rig.store, rig.transport, rig.options).error().code == Errc::invalid_argument);
    CHECK(rig.transport.requests.empty());
  }
  SECTION("attempts run out") {
    rig.options.max_attempts = 3;
    for (int i = 0; i < 5; ++i) rig.faults.push_back(fail_with(status_only(503, "unavailable")));
    auto p = sync(*rig.store, rig.transport, rig.options);
    REQUIRE_FALSE(p.ok());
    CHECK(p.error().code == Errc::server);
    CHECK(rig.transport.requests.size() == 3);
  }
  // Nothing is lost: the change is still queued for the next sync.
  CHECK(rig.store->outbox()->size() == 1);
}

TEST_CASE("cancellation stops between steps and during backoff", "[core][sync][cancel]") {
  Rig rig;
  rig.save(1);
  std::atomic<bool> cancel{false};
  rig.options.cancel = &cancel;
  SECTION("before the first request") {
    cancel = true;
    CHECK(sync(*rig.store, rig.transport, rig.options).error().code == Errc::cancelled);
    CHECK(rig.transport.requests.empty());
  }
  SECTION("during a backoff sleep") {
    rig.options.backoff_initial = 10s;
    rig.faults = {fail_with(status_only(503, "unavailable"))};
    rig.options.sleep = [&](std::chrono::milliseconds d) {
      rig.slept.push_back(d);
      if (rig.slept.size() == 3) cancel = true;
    };
    auto p = sync(*rig.store, rig.transport, rig.options);
    CHECK(p.error().code == Errc::cancelled);
    CHECK(rig.slept.size() == 3);  // stopped after 150 ms of a 5-10 s wait
    CHECK(rig.transport.requests.size() == 1);
  }
  SECTION("from the progress callback, between round trips") {
    rig.options.batch_size = 1;
    rig.save(3);
    rig.options.on_progress = [&](const SyncProgress&) { cancel = true; };
    CHECK(sync(*rig.store, rig.transport, rig.options).error().code == Errc::cancelled);
    // The callback for the first answer runs once the second request has left
    // (the sync is pipelined); no third one is sent, and both answers are committed.
    CHECK(rig.transport.requests.size() == 2);
    CHECK(rig.store->outbox()->size() == 2);
  }
  cancel = false;
  rig.options.on_progress = nullptr;
  rig.options.sleep = [](std::chrono::milliseconds) {};
  REQUIRE(sync(*rig.store, rig.transport, rig.options).ok());
  CHECK(rig.store->outbox()->empty());
}

TEST_CASE("cursor_ahead resets the cursor and pulls again from the start", "[core][sync]") {
  Rig rig;
  rig.save(2);
  REQUIRE(sync(*rig.store, rig.transport, rig.options).ok());
  // The server is restored from an older backup: its log is shorter.
  ReferenceServer restored{{survey_form()}};
  restored.token = rig.server.token;
  Change c;
  c.id = "other:1";
  c.record = "0193a1c2-0000-7000-8000-0000000000aa";
  c.form = "survey";
  c.scope = "14.03";
  c.fields = {{"name", "z"}};
  c.hlc = "2026-11-28T09:14:03.120Z/0001";
  restored.sync("other", {c}, 0, 0);
  rig.server = restored;
  auto p = sync(*rig.store, rig.transport, rig.options);
  REQUIRE(p.ok());
  CHECK(*rig.store->cursor() == 1);
  CHECK(rig.store->get(c.record).ok());
  CHECK(json::parse(rig.transport.requests.back().body)["since"] == 0);
}

TEST_CASE("payload_too_large halves the batch", "[core][sync]") {
  Rig rig;
  rig.save(8);
  rig.options.batch_size = 8;
  rig.faults = {fail_with(status_only(413, "payload_too_large"))};
  auto p = sync(*rig.store, rig.transport, rig.options);
  REQUIRE(p.ok());
  CHECK(json::parse(rig.transport.requests[0].body)["changes"].size() == 8);
  CHECK(json::parse(rig.transport.requests[1].body)["changes"].size() == 4);
  CHECK(rig.store->outbox()->empty());
}

TEST_CASE("the next request leaves before the previous answer is applied, on the calling thread",
          "[core][sync][pipeline]") {
  Rig rig;
  rig.save(9);
  std::vector<SyncResponse> answers;
  std::vector<std::thread::id> send_threads, progress_threads;
  MemoryTransport recording([&](const HttpRequest& r) -> Result<HttpResponse> {
    send_threads.push_back(std::this_thread::get_id());
    HttpResponse resp = rig.server.handle(r);
    answers.push_back(SyncResponse::from_json(json::parse(resp.body)).value());
    return resp;
  });
  rig.options.batch_size = 3;
  rig.options.on_progress = [&](const SyncProgress&) {
    progress_threads.push_back(std::this_thread::get_id());
  };
  auto p = sync(*rig.store, recording, rig.options);
  REQUIRE(p.ok());
  CHECK(p->applied == 9);
  CHECK(p->round_trips == 3);
  REQUIRE(recording.requests.size() == 3);
  // Each request pulls from the previous answer's cursor (sent before that answer
  // was stored) and asks for no echo of its own changes' entries.
  for (std::size_t i = 1; i < recording.requests.size(); ++i) {
    json body = json::parse(recording.requests[i].body);
    CHECK(body.at("since") == answers[i - 1].cursor);
    CHECK(body.at("echo") == false);
  }
  for (auto id : send_threads) CHECK(id == std::this_thread::get_id());
  REQUIRE(progress_threads.size() == 3);
  for (auto id : progress_threads) CHECK(id == std::this_thread::get_id());
  CHECK(*rig.store->cursor() == answers.back().cursor);
  CHECK(rig.store->outbox()->empty());
  CHECK(rig.server.self_conflicts == 0);
}

TEST_CASE("a change waits while an answer about its record is being applied",
          "[core][sync][pipeline]") {
  Rig rig;
  auto a = rig.store->put(new_record({{"name", "first"}}));
  REQUIRE(a.ok());
  REQUIRE(rig.store->next_batch(10)->size() == 1);               // sent once, answer lost
  REQUIRE(rig.store->put(edit(*a, {{"name", "second"}})).ok());  // a second change of it
  rig.save(2);
  REQUIRE(rig.store->outbox()->size() == 4);

  rig.options.batch_size = 1;
  auto p = sync(*rig.store, rig.transport, rig.options);
  REQUIRE(p.ok());
  CHECK(p->applied == 4);
  CHECK(p->conflicts == 0);
  // The edit left only after the first change's answer was applied, so it was
  // rebased on that change's versions instead of conflicting with it.
  CHECK(rig.server.self_conflicts == 0);
  REQUIRE(rig.transport.requests.size() == 4);
  std::vector<std::string> sent;
  for (const auto& r : rig.transport.requests) {
    const json body = json::parse(r.body);
    for (const auto& c : body.at("changes")) sent.push_back(c.at("record"));
  }
  REQUIRE(sent.size() == 4);
  CHECK(sent[0] == *a);
  CHECK(sent[1] == *a);
  CHECK(rig.store->get(*a)->fields.at("name").value == "second");
  CHECK(rig.server.records.at(*a).fields.at("name").value == "second");
}

TEST_CASE("a sync stopped while an answer is applied resumes with nothing lost or doubled",
          "[core][sync][pipeline]") {
  Rig rig;
  rig.save(9);
  auto pass = [](const HttpRequest&) -> std::optional<Result<HttpResponse>> {
    return std::nullopt;
  };
  // The third request fails for good while the second answer is being applied.
  rig.faults = {pass, pass, fail_with(status_only(403, "forbidden"))};
  rig.options.batch_size = 3;
  auto stopped = sync(*rig.store, rig.transport, rig.options);
  REQUIRE_FALSE(stopped.ok());
  CHECK(stopped.error().code == Errc::forbidden);
  // Both answers that arrived are applied, with the second one's cursor.
  CHECK(rig.store->outbox()->size() == 3);
  CHECK(*rig.store->cursor() == 6);

  auto resumed = sync(*rig.store, rig.transport, rig.options);
  REQUIRE(resumed.ok());
  CHECK(resumed->sent == 3);
  CHECK(rig.store->outbox()->empty());
  CHECK(rig.server.log.size() == 9);
  CHECK(rig.server.processed.size() == 9);
  for (const auto& [id, n] : rig.server.processed) CHECK(n == 1);
  CHECK(rig.store->list({})->size() == 9);
}

TEST_CASE("next_batch after a batch in flight", "[core][sync][pipeline]") {
  TempDir dir;
  auto store = open_with_form(dir.file("d.db"));
  auto a = store->put(new_record({{"name", "a"}}));
  auto b = store->put(new_record({{"name", "b"}}));
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  auto first = store->next_batch(1);
  REQUIRE(first->size() == 1);
  CHECK(first->at(0).record == *a);
  auto second = store->next_batch(5, *first);
  REQUIRE(second->size() == 1);
  CHECK(second->at(0).record == *b);
  CHECK(store->next_batch(5, *second)->empty());  // nothing after b

  REQUIRE(store->put(edit(*a, {{"name", "a2"}})).ok());  // a's second change, after b
  auto both = *first;
  both.push_back(second->at(0));
  CHECK(store->next_batch(5, both)->empty());    // stops before a change of a record in flight
  auto after_b = store->next_batch(5, *second);  // a's first change is answered: a2 may go
  REQUIRE(after_b->size() == 1);
  CHECK(after_b->at(0).record == *a);
  Change foreign = first->at(0);
  foreign.id = "another-device:1";
  CHECK(store->next_batch(5, {foreign}).error().code == Errc::invalid_argument);
}

namespace {

// The reference server behind transports that sync() may use from two threads at
// once (addition F offered), recording every sync request body in arrival order.
struct Lanes {
  TempDir dir;
  ReferenceServer server{{survey_form()}};
  std::unique_ptr<Store> store = open_with_form(dir.file("device.db"));
  std::mutex mutex;
  std::condition_variable arrived;
  std::vector<json> bodies;
  int out = 0, most_out = 0;
  // Holds the first sync request until a second one arrives (at most 10 s), so a
  // sync that can have two out is seen to.
  bool hold_first = false;
  // Answers instead of the server when it returns something.
  std::function<std::optional<HttpResponse>(const json&)> fault;
  MemoryTransport transport{[this](const HttpRequest& r) -> Result<HttpResponse> {
    std::unique_lock lock(mutex);
    if (r.target != "/v1/sync") return server.handle(r);
    json body = json::parse(r.body);
    bodies.push_back(body);
    most_out = std::max(most_out, ++out);
    arrived.notify_all();
    if (hold_first && bodies.size() == 1)
      arrived.wait_for(lock, 10s, [&] { return bodies.size() >= 2; });
    --out;
    if (fault)
      if (auto answer = fault(body)) return *answer;
    return server.handle(r);
  }};
  SyncOptions options;

  Lanes() {
    server.offer_omit_own = true;
    transport.offer_another = true;
    options.jitter_seed = 7;
    options.sleep = [](std::chrono::milliseconds) {};
    REQUIRE(login(*store, transport, "officer.bantan", "secret").ok());
  }
  void save(int n, const std::string& prefix = "r") {
    for (int i = 0; i < n; ++i)
      REQUIRE(store->put(new_record({{"name", prefix + std::to_string(i)}})).ok());
  }
  std::vector<json> pulls() const {
    std::vector<json> out;
    for (const auto& b : bodies)
      if (b.value("limit", 500) > 0) out.push_back(b);
    return out;
  }
};

}  // namespace

TEST_CASE("with a second connection, a push goes out while the pull is out",
          "[core][sync][lanes]") {
  Lanes lanes;
  lanes.save(12);
  lanes.hold_first = true;
  lanes.options.batch_size = 3;
  std::vector<std::thread::id> progress_threads;
  lanes.options.on_progress = [&](const SyncProgress&) {
    progress_threads.push_back(std::this_thread::get_id());
  };
  auto p = sync(*lanes.store, lanes.transport, lanes.options);
  REQUIRE(p.ok());
  CHECK(p->applied == 12);
  CHECK(p->round_trips == 4);
  CHECK(lanes.most_out == 2);
  // One of the two carries the pull; the other pushes only. Each pull leaves out
  // every change of this device so far, its own batch's included.
  REQUIRE(lanes.bodies.size() == 4);
  CHECK(lanes.pulls().size() == 2);
  for (const auto& b : lanes.pulls()) CHECK(b.at("omit_own_through").get<int>() >= 6);
  for (const auto& b : lanes.bodies)
    if (b.at("limit") == 0) CHECK_FALSE(b.contains("omit_own_through"));
  CHECK(p->received == 0);  // nothing of this device came back
  for (auto id : progress_threads) CHECK(id == std::this_thread::get_id());
  CHECK(lanes.store->outbox()->empty());
  CHECK(lanes.server.log.size() == 12);
  for (const auto& [id, n] : lanes.server.processed) CHECK(n == 1);
  CHECK(lanes.server.self_conflicts == 0);
  auto records = lanes.store->list({});
  REQUIRE(records.ok());
  for (const auto& r : records.value()) {
    CHECK_FALSE(r.dirty);
    CHECK(r.version > 0);
  }

  // Another device's entries still come; none of this device's.
  std::vector<Change> other(1);
  other[0].id = "other-device:1";
  other[0].record = "0193a1c2-0000-7000-8000-000000000001";
  other[0].form = "survey";
  other[0].form_version = 1;
  other[0].scope = "14.03.02";
  other[0].fields = {{"name", "theirs"}};
  other[0].hlc = "2026-11-28T09:14:03.120Z/0001";
  lanes.server.sync("other-device", other, 0, 0);
  auto again = sync(*lanes.store, lanes.transport, lanes.options);
  REQUIRE(again.ok());
  CHECK(again->received == 1);
  CHECK(*lanes.store->cursor() == lanes.server.seq);
  CHECK(lanes.store->get(other[0].record)->fields.at("name").value == "theirs");
}

TEST_CASE("one connection, or a server without addition F, keeps one request out",
          "[core][sync][lanes]") {
  for (bool offered : {false, true}) {
    Lanes lanes;
    lanes.server.offer_omit_own = offered;
    REQUIRE(login(*lanes.store, lanes.transport, "officer.bantan", "secret").ok());
    lanes.save(9);
    lanes.options.batch_size = 3;
    if (offered) lanes.options.in_flight = 1;
    auto p = sync(*lanes.store, lanes.transport, lanes.options);
    REQUIRE(p.ok());
    CHECK(p->applied == 9);
    CHECK(lanes.most_out == 1);
    for (const auto& b : lanes.bodies) {
      CHECK(b.at("limit").get<int>() > 0);  // every request pulls, as before addition F
      CHECK(b.contains("omit_own_through") == offered);
    }
  }
}

TEST_CASE("with two connections an outbox under one batch goes out in batches of at least 50",
          "[core][sync][lanes]") {
  // 130 changes and the default batch of 500: ceil(130 / 4) = 33, so 50 a request,
  // two a lane.
  auto batches = [](Lanes& lanes) {
    std::vector<std::size_t> sizes;
    for (const auto& b : lanes.bodies)
      if (!b.at("changes").empty()) sizes.push_back(b.at("changes").size());
    // Requests on two connections arrive in either order.
    std::sort(sizes.begin(), sizes.end(), std::greater<>());
    return sizes;
  };
  {
    Lanes lanes;
    lanes.save(130);
    auto p = sync(*lanes.store, lanes.transport, lanes.options);
    REQUIRE(p.ok());
    CHECK(p->applied == 130);
    CHECK(batches(lanes) == std::vector<std::size_t>{50, 50, 30});
  }
  {  // an outbox of a batch or more keeps batch_size: split, it would be 50, 50, 30
    Lanes lanes;
    lanes.save(130);
    lanes.options.batch_size = 100;
    REQUIRE(sync(*lanes.store, lanes.transport, lanes.options).ok());
    CHECK(batches(lanes) == std::vector<std::size_t>{100, 30});
  }
  {  // one connection: one batch, as before
    Lanes lanes;
    lanes.save(130);
    lanes.options.in_flight = 1;
    REQUIRE(sync(*lanes.store, lanes.transport, lanes.options).ok());
    CHECK(batches(lanes) == std::vector<std::size_t>{130});
  }
}

TEST_CASE("a push refused beside a pull stops the sync, and the next one loses and doubles nothing",
          "[core][sync][lanes]") {
  Lanes lanes;
  lanes.save(12);
  lanes.options.batch_size = 3;
  int refused = 0;
  lanes.fault = [&](const json& body) -> std::optional<HttpResponse> {
    if (body.at("limit") != 0 || refused++ > 0) return std::nullopt;
    return status_only(403, "forbidden");
  };
  auto stopped = sync(*lanes.store, lanes.transport, lanes.options);
  REQUIRE_FALSE(stopped.ok());
  CHECK(stopped.error().code == Errc::forbidden);
  CHECK_FALSE(lanes.store->outbox()->empty());

  lanes.fault = nullptr;
  auto resumed = sync(*lanes.store, lanes.transport, lanes.options);
  REQUIRE(resumed.ok());
  CHECK(lanes.store->outbox()->empty());
  CHECK(lanes.server.log.size() == 12);
  for (const auto& [id, n] : lanes.server.processed) CHECK(n == 1);
  auto records = lanes.store->list({});
  REQUIRE(records.ok());
  CHECK(records->size() == 12);
  for (const auto& r : records.value()) CHECK_FALSE(r.dirty);
  CHECK(lanes.server.self_conflicts == 0);
}

TEST_CASE("after id_reused a device leaves none of its entries out and pulls the log again",
          "[core][sync][lanes]") {
  Lanes lanes;
  // Another store under the same device id got to the server first with the
  // same counters (a copy of this one restored, say).
  std::vector<Change> theirs(2);
  for (int i = 0; i < 2; ++i) {
    theirs[i].id = lanes.store->device_id() + ":" + std::to_string(i + 1);
    theirs[i].record = "0193a1c2-0000-7000-8000-00000000000" + std::to_string(i + 1);
    theirs[i].form = "survey";
    theirs[i].form_version = 1;
    theirs[i].scope = "14.03.02";
    theirs[i].fields = {{"name", "copy " + std::to_string(i)}};
    theirs[i].hlc = "2026-11-28T09:14:03.120Z/0001";
  }
  lanes.server.sync(lanes.store->device_id(), theirs, 0, 0);
  lanes.save(6);
  lanes.options.batch_size = 2;
  auto p = sync(*lanes.store, lanes.transport, lanes.options);
  REQUIRE(p.ok());
  CHECK(p->rejected == 2);
  auto rejected = lanes.store->rejected();
  REQUIRE(rejected.ok());
  for (const auto& r : rejected.value()) CHECK(r.reason.code == "id_reused");
  // The other store's records reached this one although their origins carry
  // this device's counters.
  for (const auto& c : theirs) {
    auto got = lanes.store->get(c.record);
    REQUIRE(got.ok());
    CHECK(got->fields.at("name").value == c.fields.at("name"));
  }
  // From now on no pull of this store leaves anything out.
  lanes.bodies.clear();
  lanes.save(1, "later");
  REQUIRE(sync(*lanes.store, lanes.transport, lanes.options).ok());
  for (const auto& b : lanes.bodies) CHECK_FALSE(b.contains("omit_own_through"));
}
