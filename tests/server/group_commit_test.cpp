// Group commit: concurrent pushes share transactions, each answer comes only after
// its commit, results survive reopening the store, and a failing job is undone
// alone.
#include <catch2/catch.hpp>

#include <chrono>
#include <set>
#include <thread>

#include "merge.hpp"
#include "server_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::server;
using namespace fieldsync::server::test;

namespace {

// An officer row to write from a job (the password hash is never checked here).
UserRecord user(const std::string& name) {
  UserRecord u;
  u.name = name;
  u.role = "officer";
  u.password = PasswordHash{"pbkdf2-sha256", 1, "s", "h"};
  return u;
}

// Waits until `n` jobs are queued on a paused writer.
void wait_for_queue(Writer& writer, std::size_t n) {
  for (int i = 0; i < 2000 && writer.queued() < n; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  REQUIRE(writer.queued() == n);
}

}  // namespace

TEST_CASE("many concurrent pushes are committed in fewer transactions, each durable",
          "[server][group_commit]") {
  constexpr int kDevices = 24;
  TempDir keep;  // the store file outlives the fixture
  const std::string db_path = (keep.path / "server.db").string();
  std::vector<json> answers(kDevices);
  std::int64_t transactions = 0;
  {
    ServerFixture f(RouterOptions{}, true, db_path);
    f.add_user("officer.bantan", "officer", {"14.03.02"});
    std::vector<std::string> tokens;
    for (int i = 0; i < kDevices; ++i)
      tokens.push_back(f.login("officer.bantan", "secret-password", "dev-" + std::to_string(i)));
    const auto before = f.stats().write_transactions;

    f.writer->pause();
    std::vector<std::thread> threads;
    for (int i = 0; i < kDevices; ++i) {
      threads.emplace_back([&, i] {
        const std::string device = "dev-" + std::to_string(i);
        json body = {
            {"device_id", device},
            {"changes",
             json::array({change(device + ":1", record_id(i),
                                 {{"code", "k" + std::to_string(i)}, {"period", "2026"}})})}};
        Request req{
            "POST",
            "/v1/sync",
            {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + tokens[i]}},
            body.dump(),
            "192.0.2.1"};
        Response res = f.router->handle_request(req);
        answers[i] = json::parse(res.body);
        answers[i]["_status"] = res.status;
        // The answer came after the commit: a fresh read already sees the record.
        auto rec = f.store->record(record_id(i));
        answers[i]["_visible"] = rec.ok() && rec->has_value();
      });
    }
    wait_for_queue(*f.writer, kDevices);
    f.writer->resume();
    for (auto& t : threads) t.join();
    transactions = f.stats().write_transactions - before;
    CHECK(transactions < kDevices);
    CHECK(transactions == 1);  // everything queued went into one transaction
  }
  for (int i = 0; i < kDevices; ++i) {
    CAPTURE(i);
    CHECK(answers[i]["_status"] == 200);
    CHECK(answers[i]["results"][0]["status"] == "applied");
    CHECK(answers[i]["_visible"] == true);
  }
  // Reopen the file: every acknowledged change is there, with distinct seqs.
  SqliteStoreOptions so;
  so.path = db_path;
  so.create = false;
  auto reopened = open_sqlite_store(so);
  REQUIRE(reopened.ok());
  std::set<std::int64_t> seqs;
  for (int i = 0; i < kDevices; ++i) {
    auto rec = (*reopened)->record(record_id(i));
    REQUIRE(rec.ok());
    REQUIRE(rec->has_value());
    CHECK((*rec)->row.version == answers[i]["results"][0]["seq"]);
    seqs.insert((*rec)->row.version);
  }
  CHECK(seqs.size() == kDevices);
  CHECK(*seqs.rbegin() == (*reopened)->head_seq().value());
}

TEST_CASE("without pausing, concurrent pushes from threads are all committed",
          "[server][group_commit]") {
  ServerFixture f;
  f.add_user("officer.bantan", "officer", {"14.03.02"});
  constexpr int kThreads = 8, kPushes = 12;
  std::vector<std::string> tokens;
  for (int t = 0; t < kThreads; ++t)
    tokens.push_back(f.login("officer.bantan", "secret-password", "dev-" + std::to_string(t)));
  const auto before = f.stats().write_transactions;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string device = "dev-" + std::to_string(t);
      for (int p = 1; p <= kPushes; ++p) {
        const int n = t * 100 + p;
        json body = {
            {"device_id", device},
            {"changes", json::array({change(device + ":" + std::to_string(p), record_id(n),
                                            {{"code", "k"}, {"period", std::to_string(n)}})})}};
        Request req{
            "POST",
            "/v1/sync",
            {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + tokens[t]}},
            body.dump(),
            "192.0.2.1"};
        Response res = f.router->handle_request(req);
        if (res.status != 200 || json::parse(res.body)["results"][0]["status"] != "applied")
          ++failures;
        auto rec = f.store->record(record_id(n));
        if (!rec.ok() || !rec->has_value()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  const auto s = f.stats();
  CHECK(s.records == kThreads * kPushes);
  CHECK(s.log_entries == kThreads * kPushes);
  CHECK(s.write_transactions - before <= kThreads * kPushes);
}

TEST_CASE("a failing job in a group is rolled back alone", "[server][group_commit]") {
  ServerFixture f(RouterOptions{}, false);
  f.writer->pause();
  Result<void> r1, r2, r3;
  std::thread t1([&] {
    r1 = f.writer->run([&](WriteTxn& txn) -> Result<void> {
      txn.put_user(user("one"));
      return {};
    });
  });
  wait_for_queue(*f.writer, 1);
  std::thread t2([&] {
    r2 = f.writer->run([&](WriteTxn& txn) -> Result<void> {
      txn.put_user(user("two"));
      txn.next_seq();
      throw StoreFailure{Error(Errc::io, "simulated failure")};
    });
  });
  wait_for_queue(*f.writer, 2);
  std::thread t3([&] {
    r3 = f.writer->run([&](WriteTxn& txn) -> Result<void> {
      txn.put_user(user("three"));
      return Error(Errc::validation, "refused by the job");
    });
  });
  wait_for_queue(*f.writer, 3);
  const auto before = f.stats().write_transactions;
  f.writer->resume();
  t1.join();
  t2.join();
  t3.join();
  CHECK(r1.ok());
  REQUIRE(!r2.ok());
  CHECK(r2.error().code == Errc::io);
  REQUIRE(!r3.ok());
  CHECK(r3.error().code == Errc::validation);
  CHECK(f.stats().write_transactions == before + 1);
  CHECK(f.store->user("one").value().has_value());
  CHECK(!f.store->user("two").value().has_value());
  CHECK(!f.store->user("three").value().has_value());
  CHECK(f.stats().head_seq == 0);  // the failed job's seq was rolled back too
}

TEST_CASE("a started job consumes what its caller hands over meanwhile, or stops if abandoned",
          "[server][group_commit]") {
  // Router::sync merges each change once its hash is published (HashFeed): the
  // writer runs the job while the request thread is still hashing.
  ServerFixture f(RouterOptions{}, false);
  const std::vector<std::string> names = {"a1", "a2", "a3", "a4", "a5"};
  // A job that adds a user per item, each once the caller has published it.
  auto consume = [&](std::vector<std::string>& items, HashFeed& feed) -> Writer::Job {
    return [&](WriteTxn& txn) -> Result<void> {
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (!feed.wait_for(i)) return Error(Errc::internal, "abandoned");
        txn.put_user(user(items[i]));
      }
      return {};
    };
  };
  SECTION("every item published: all of it committed") {
    std::vector<std::string> items(names.size());
    HashFeed feed;
    auto ticket = f.writer->start(consume(items, feed));
    for (std::size_t i = 0; i < names.size(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // the job waits meanwhile
      items[i] = names[i];
      feed.publish(i + 1);
    }
    REQUIRE(ticket.wait().ok());
    for (const auto& n : names) CHECK(f.store->user(n).value().has_value());
  }
  SECTION("abandoned halfway: the job stops and nothing of it is kept") {
    std::vector<std::string> items(names.size());
    HashFeed feed;
    auto ticket = f.writer->start(consume(items, feed));
    items[0] = names[0];
    items[1] = names[1];
    feed.publish(2);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    feed.abandon();
    auto r = ticket.wait();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::internal);
    CHECK_FALSE(f.store->user(names[0]).value().has_value());
  }
  SECTION("after stop, start refuses without running the job") {
    f.writer->stop();
    bool ran = false;
    auto ticket = f.writer->start([&](WriteTxn&) -> Result<void> {
      ran = true;
      return {};
    });
    auto r = ticket.wait();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::io);
    CHECK_FALSE(ran);
  }
}

TEST_CASE("seqs of a failed job are handed out again and the counter is stored at commit",
          "[server][group_commit]") {
  ServerFixture f(RouterOptions{}, false);
  f.writer->pause();
  std::vector<std::int64_t> a, b, c;
  Result<void> ra, rb, rc;
  std::thread ta([&] {
    ra = f.writer->run([&](WriteTxn& txn) -> Result<void> {
      a = {txn.next_seq(), txn.next_seq()};
      return {};
    });
  });
  wait_for_queue(*f.writer, 1);
  std::thread tb([&] {
    rb = f.writer->run([&](WriteTxn& txn) -> Result<void> {
      b = {txn.next_seq()};
      throw StoreFailure{Error(Errc::io, "simulated failure")};
    });
  });
  wait_for_queue(*f.writer, 2);
  std::thread tc([&] {
    rc = f.writer->run([&](WriteTxn& txn) -> Result<void> {
      c = {txn.next_seq()};
      return {};
    });
  });
  wait_for_queue(*f.writer, 3);
  const auto before = f.stats().write_transactions;
  f.writer->resume();
  ta.join();
  tb.join();
  tc.join();
  CHECK(ra.ok());
  CHECK(!rb.ok());
  CHECK(rc.ok());
  CHECK(f.stats().write_transactions == before + 1);  // one group
  CHECK(a == std::vector<std::int64_t>{1, 2});
  CHECK(b == std::vector<std::int64_t>{3});
  CHECK(c == std::vector<std::int64_t>{3});  // the failed job's seq was not kept
  CHECK(f.stats().head_seq == 3);

  // The next transaction reads the stored counter afresh.
  std::int64_t d = 0;
  REQUIRE(f.writer
              ->run([&](WriteTxn& txn) -> Result<void> {
                d = txn.next_seq();
                return {};
              })
              .ok());
  CHECK(d == 4);
  CHECK(f.stats().head_seq == 4);
  // A transaction that takes a seq and then fails as a whole stores nothing.
  CHECK(!f.writer
             ->run([&](WriteTxn& txn) -> Result<void> {
               txn.next_seq();
               return Error(Errc::validation, "refused");
             })
             .ok());
  CHECK(f.stats().head_seq == 4);
}

namespace {

// Commits `entries` log entries of ~1 page each in one write transaction.
void write_pages(ServerStore& store, int entries) {
  auto txn = store.begin_write();
  REQUIRE(txn);
  for (int i = 0; i < entries; ++i) {
    LogEntry e;
    e.seq = (*txn)->next_seq();
    e.record = "0193a0b0-0000-7000-8000-000000000001";
    e.form = "kla";
    e.form_version = 1;
    e.scope = "14.03";
    e.op = "upsert";
    e.origin = "dev:" + std::to_string(e.seq);
    e.fields = {{"note", std::string(3000, 'x')}};
    (*txn)->insert_log(e);
  }
  REQUIRE((*txn)->commit());
}

std::uintmax_t file_size_or_zero(const std::filesystem::path& p) {
  std::error_code ec;
  auto n = std::filesystem::file_size(p, ec);
  return ec ? 0 : n;
}

}  // namespace

TEST_CASE("WAL checkpoints run on the store's own thread, and the WAL stays bounded",
          "[server][group_commit][wal]") {
  TempDir dir;
  SqliteStoreOptions options;
  options.path = (dir.path / "server.db").string();
  options.wal_background_pages = 40;
  options.wal_writer_pages = 400;
  auto opened = open_sqlite_store(options);
  REQUIRE(opened);
  ServerStore& store = **opened;
  const auto db_file = dir.path / "server.db";
  const auto wal_file = dir.path / "server.db-wal";

  // Past the background threshold: the checkpointer thread copies the pages into
  // the database file, and the writer does not.
  const auto db_before = file_size_or_zero(db_file);
  write_pages(store, 60);
  std::int64_t background = 0;
  for (int i = 0; i < 500 && background == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    background = store.stats()->wal_checkpoints_background;
  }
  CHECK(background >= 1);
  CHECK(store.stats()->wal_checkpoints_by_writer == 0);
  CHECK(file_size_or_zero(db_file) > db_before + 50 * 4096);

  // A long run of commits (over 2,000 pages): whatever the checkpointer manages
  // meanwhile, the WAL starts over and its file stays near the writer's
  // threshold of 400 pages, and every entry is there.
  for (int round = 0; round < 60; ++round) write_pages(store, 30);
  CHECK(file_size_or_zero(wal_file) < 1000 * (4096 + 24));
  auto stats = store.stats();
  REQUIRE(stats);
  CHECK(stats->head_seq == 60 + 60 * 30);
  CHECK(stats->log_entries == 60 + 60 * 30);
  CHECK(stats->wal_checkpoints_background + stats->wal_checkpoints_by_writer >= 2);
}
