// Crash safety of the device store (design.md invariant 5): a child process saves
// in a loop and reports each save only after put() returned; the parent kills it
// with SIGKILL at random moments, then reopens the file and checks that every
// reported save is there with its outbox change, and the outbox is well formed.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "store_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;
using namespace fieldsync::store_tests;

namespace {

// Runs in the forked child: never returns, never touches Catch.
[[noreturn]] void save_forever(const std::string& path, int fd, std::int64_t first_value,
                               unsigned seed) {
  StoreOptions o;
  o.path = path;
  auto opened = Store::open(o);
  if (!opened) _exit(3);
  auto store = std::move(opened).value();
  std::mt19937 rng(seed);
  std::vector<std::string> ids;
  if (auto existing = store->list({}); existing)
    for (const auto& r : *existing) ids.push_back(r.id);
  std::int64_t value = first_value;
  for (;;) {
    ++value;
    Result<std::string> id = std::string();
    int what = static_cast<int>(rng() % 10);
    if (ids.empty() || what < 4) {
      id = store->put(new_record({{"name", "crash"}, {"count", value}}));
    } else if (what < 8) {
      id = store->put(edit(ids[rng() % ids.size()], {{"count", value}}));
    } else {
      std::vector<PutRequest> many;
      for (int i = 0; i < 3; ++i) many.push_back(new_record({{"name", "many"}, {"count", value}}));
      auto r = store->put_many(many);
      if (!r) _exit(4);
      id = r->back();
      for (std::size_t i = 0; i + 1 < r->size(); ++i) {
        std::string line = (*r)[i] + " " + std::to_string(value) + "\n";
        if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(5);
      }
    }
    if (!id) _exit(4);
    ids.push_back(*id);
    std::string line = *id + " " + std::to_string(value) + "\n";
    if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(5);
  }
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

}  // namespace

TEST_CASE("killing a saving process at any instant loses no acknowledged save",
          "[core][crash][fault]") {
  TempDir dir;
  std::string path = dir.file("crash.db");
  { open_with_form(path); }
  std::mt19937 rng(2024);
  std::map<std::string, std::int64_t> acked;  // record -> last value reported
  std::int64_t reported = 0;
  int kills = 0;
  auto start = std::chrono::steady_clock::now();

  for (int life = 0; life < 30; ++life) {
    if (std::chrono::steady_clock::now() - start > std::chrono::seconds(18)) break;
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    std::int64_t first_value = (life + 1) * 10'000'000LL;
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      save_forever(path, fds[1], first_value, static_cast<unsigned>(life));
    }
    ::close(fds[1]);
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 80));
    REQUIRE(::kill(pid, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    std::string lines = read_all(fds[0]);
    ::close(fds[0]);
    INFO("life " << life);
    // The child may only die by our signal, never by its own failure.
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(WTERMSIG(status) == SIGKILL);
    ++kills;

    std::istringstream in(lines);
    std::string line;
    while (std::getline(in, line)) {
      if (in.eof()) break;  // a line cut short by the kill was not reported in full
      std::istringstream parts(line);
      std::string id;
      std::int64_t value = 0;
      parts >> id >> value;
      acked[id] = value;
      ++reported;
    }

    auto store = open_store(path);
    auto out = store->outbox();
    REQUIRE(out.ok());
    std::int64_t last = 0;
    std::map<std::string, const Change*> latest;
    for (const auto& e : *out) {
      REQUIRE(e.counter > last);
      last = e.counter;
      REQUIRE(e.change.id == store->device_id() + ":" + std::to_string(e.counter));
      latest[e.change.record] = &e.change;
    }
    for (const auto& [id, value] : acked) {
      INFO("record " << id);
      auto rec = store->get(id);
      REQUIRE(rec.ok());
      // At most one save can have committed after its report was cut off.
      REQUIRE(rec->fields.at("count").value.get<std::int64_t>() >= value);
      REQUIRE(rec->fields.at("count").dirty);
      REQUIRE(latest.count(id));
      REQUIRE(latest[id]->fields.at("count") == rec->fields.at("count").value);
    }
  }
  CHECK(kills >= 10);
  CHECK(reported > 100);
  WARN("crash test: " << kills << " kills, " << reported << " acknowledged saves");
}
