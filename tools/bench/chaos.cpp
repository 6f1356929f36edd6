// The chaos run (chaos.hpp): the real server behind fieldsync-faultproxy, device
// stores on real files, SIGKILL for the server and for devices synced in forked
// children, then an audit of every accepted change against the server's log,
// conflicts and quarantine, and of every device against the server's records.
#include "chaos.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include "fieldsync/form.hpp"
#include "fieldsync/http_transport.hpp"
#include "fieldsync/store.hpp"
#include "fieldsync/sync.hpp"
#include "support/server_process.hpp"

namespace fieldsync::chaos {
namespace {

using Clock = std::chrono::steady_clock;
using testing::ServerProcess;
constexpr std::chrono::seconds kCallTimeout{20};
const char* const kForm = "kla-desa";

std::string binary_dir() {
  if (const char* env = std::getenv("FIELDSYNC_BINARY_DIR"); env != nullptr && *env != '\0')
    return env;
  return FIELDSYNC_BINARY_DIR;
}

// fieldsync-faultproxy as a child process: started on port 0, stopped with SIGTERM.
class Proxy {
 public:
  static Result<std::unique_ptr<Proxy>> start(std::uint16_t upstream, std::uint64_t seed,
                                              double fault_rate) {
    const std::string bin = binary_dir() + "/tools/faultproxy/fieldsync-faultproxy";
    const std::string rate = std::to_string(fault_rate / 3.0);
    std::vector<std::string> args = {bin,
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--upstream",
                                     "127.0.0.1:" + std::to_string(upstream),
                                     "--seed",
                                     std::to_string(seed),
                                     "--drop-rate",
                                     rate,
                                     "--reset-rate",
                                     rate,
                                     "--truncate-rate",
                                     rate};
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return Error(Errc::io, "pipe failed");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = fork();
    if (pid < 0) return Error(Errc::io, "fork failed");
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      dup2(fds[1], 1);
      const int null_fd = open("/dev/null", O_WRONLY);
      if (null_fd >= 0) dup2(null_fd, 2);
      execv(bin.c_str(), argv.data());
      _exit(127);
    }
    close(fds[1]);
    auto proxy = std::unique_ptr<Proxy>(new Proxy(pid, fds[0]));
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (Clock::now() < deadline) {
      const auto nl = proxy->out_.find('\n');
      if (nl != std::string::npos) {
        const std::string line = proxy->out_.substr(0, nl);
        proxy->out_.erase(0, nl + 1);
        const std::string prefix = "listening on ";
        if (line.rfind(prefix, 0) == 0) {
          proxy->port_ = static_cast<std::uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
          return proxy;
        }
        continue;
      }
      if (!proxy->read_some(500)) break;
    }
    return Error(Errc::io, "fieldsync-faultproxy did not start (" + bin + ")");
  }

  ~Proxy() {
    if (pid_ > 0) (void)stop();
    if (fd_ >= 0) close(fd_);
  }
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  std::uint16_t port() const { return port_; }

  // SIGTERM; returns the counters line (an empty object when none came).
  nlohmann::json stop() {
    if (pid_ <= 0) return nlohmann::json::object();
    kill(pid_, SIGTERM);
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline && read_some(500)) {
    }
    int status = 0;
    if (Clock::now() >= deadline) kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    nlohmann::json counters = nlohmann::json::object();
    std::size_t start = 0;
    while (start < out_.size()) {
      std::size_t nl = out_.find('\n', start);
      if (nl == std::string::npos) nl = out_.size();
      const std::string line = out_.substr(start, nl - start);
      if (!line.empty() && line.front() == '{') {
        auto parsed = nlohmann::json::parse(line, nullptr, false);
        if (!parsed.is_discarded()) counters = parsed;
      }
      start = nl + 1;
    }
    return counters;
  }

 private:
  Proxy(pid_t pid, int fd) : pid_(pid), fd_(fd) {}
  // Reads what is there within `ms`; false at end of stream or error.
  bool read_some(int ms) {
    pollfd p{fd_, POLLIN, 0};
    const int r = poll(&p, 1, ms);
    if (r < 0) return false;
    if (r == 0) return true;
    char buf[4096];
    const ssize_t n = read(fd_, buf, sizeof buf);
    if (n <= 0) return false;
    out_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::string out_;
};

// JSON calls to the server (setup and audit; never through the proxy).
class Api {
 public:
  explicit Api(std::unique_ptr<Transport> t) : t_(std::move(t)) {}
  Result<nlohmann::json> call(const std::string& method, const std::string& target,
                              const nlohmann::json& body, const std::string& token) {
    HttpRequest req{method, target, {}, {}};
    if (method == "POST") {
      req.headers.emplace_back("Content-Type", "application/json");
      req.body = body.dump();
    }
    if (!token.empty()) req.headers.emplace_back("Authorization", "Bearer " + token);
    auto res = t_->send(req, kCallTimeout);
    if (!res) return res.error();
    if (res->status != 200)
      return Error(Errc::protocol,
                   method + " " + target + " -> " + std::to_string(res->status) + " " + res->body);
    auto parsed = nlohmann::json::parse(res->body, nullptr, false);
    if (parsed.is_discarded()) return Error(Errc::protocol, target + ": not JSON");
    return parsed;
  }
  Result<std::string> login(const std::string& user, const std::string& password) {
    auto r = call("POST", "/v1/login",
                  {{"username", user}, {"password", password}, {"device_id", "chaos-audit"}}, {});
    if (!r) return r.error();
    return (*r).at("token").get<std::string>();
  }

 private:
  std::unique_ptr<Transport> t_;
};

Result<std::unique_ptr<Transport>> transport_to(const std::string& url) {
  return make_http_transport(HttpTransportOptions{url, {}});
}

struct Device {
  std::string user;
  std::string kec;
  std::string path;
  std::unique_ptr<Store> store;
  std::map<std::string, std::string> accepted;  // every change id seen in its outbox -> record
};

Result<void> open_store(Device& d) {
  StoreOptions o;
  o.path = d.path;
  auto s = Store::open(o);
  if (!s) return Error(s.error().code, "reopen " + d.path + ": " + s.error().to_string());
  d.store = std::move(s).value();
  return {};
}

// Records the ids in the outbox as accepted (before every sync).
Result<void> note_outbox(Device& d) {
  auto out = d.store->outbox();
  if (!out) return out.error();
  for (const auto& e : *out) d.accepted.emplace(e.change.id, e.change.record);
  return {};
}

SyncOptions chaos_sync_options(std::uint64_t seed) {
  SyncOptions o;
  o.attempt_timeout = std::chrono::seconds(5);
  o.max_attempts = 3;
  o.backoff_initial = std::chrono::milliseconds(10);
  o.backoff_max = std::chrono::milliseconds(100);
  o.jitter_seed = seed;
  o.batch_size = 8;
  o.pull_limit = 16;
  return o;
}

std::string village(const std::string& kec, int n) {
  return kec + ".20" + (n < 10 ? "0" : "") + std::to_string(n);
}

nlohmann::json random_fields(std::mt19937_64& rng) {
  const int pick = static_cast<int>(rng() % 6);
  const int n = static_cast<int>(rng() % 40);
  switch (pick) {
    case 0:
      return {{"children_total", 100 + n}};
    case 1:
      return {{"child_marriages", n % 5}};
    case 2:
      return {{"community_orgs_involved", n}};
    case 3:
      return {{"has_forum_anak", n % 2 == 0}};
    case 4:
      return {{"has_kla_task_force", n % 3 == 0}, {"children_total", 200 + n}};
    default:
      return {{"officer_notes", "catatan " + std::to_string(n)}};
  }
}

// One to three offline saves on a device. Saves the store refuses are not changes.
void random_edits(Device& d, std::mt19937_64& rng) {
  const int count = 1 + static_cast<int>(rng() % 3);
  for (int i = 0; i < count; ++i) {
    RecordQuery q;
    auto live = d.store->list(q);
    const double r = std::uniform_real_distribution<double>(0, 1)(rng);
    if (!live || live->empty() || r < 0.3) {
      const std::string code = village(d.kec, 1 + static_cast<int>(rng() % 6));
      PutRequest p;
      p.form = kForm;
      p.scope = code;
      p.fields = {{"desa_code", code}, {"period", "2026"}};
      p.fields.update(random_fields(rng));
      (void)d.store->put(p);
    } else if (r < 0.92) {
      PutRequest p;
      p.record = (*live)[rng() % live->size()].id;
      p.fields = random_fields(rng);
      (void)d.store->put(p);
    } else {
      (void)d.store->remove((*live)[rng() % live->size()].id);
    }
  }
}

bool still_running(pid_t pid) {
  int status = 0;
  return waitpid(pid, &status, WNOHANG) == 0;
}

nlohmann::json field_value(const nlohmann::json& record, const std::string& field) {
  const auto& fields = record.at("fields");
  auto it = fields.find(field);
  if (it == fields.end()) return nullptr;
  if (it->is_object() && it->contains("value")) return it->at("value");
  return *it;
}

bool in_scope(const std::string& scope, const std::string& kec) {
  return scope == kec || scope.rfind(kec + ".", 0) == 0;
}

class Run {
 public:
  Run(const ChaosOptions& options, std::uint64_t seed, ChaosReport& report)
      : options_(options), seed_(seed), report_(report), rng_(seed) {}

  Result<void> go() {
    if (auto r = setup(); !r) return r;
    for (int step = 0; step < options_.steps; ++step) {
      Device& d = devices_[rng_() % devices_.size()];
      if (uniform() < 0.45) {
        random_edits(d, rng_);
      } else if (auto r = chaotic_sync(d); !r) {
        return r;
      }
    }
    report_.faults_injected += proxy_->stop().value("faults", std::int64_t{0});
    if (auto r = settle(); !r) return r;
    return audit();
  }

 private:
  double uniform() { return std::uniform_real_distribution<double>(0, 1)(rng_); }

  Result<void> setup() {
    testing::ServerOptions so;
    so.users = {{"admin", "admin", {}, {}},
                {"officer.bengkalis", "officer", {"14.03.01"}, {}},
                {"officer.bantan", "officer", {"14.03.02"}, {}},
                {"officer.bengkalis2", "officer", {"14.03.01"}, {}},
                {"officer.bantan2", "officer", {"14.03.02"}, {}}};
    so.forms = {std::string(FIELDSYNC_SOURCE_DIR) + "/forms/kla-desa.json"};
    server_ = std::make_unique<ServerProcess>(so);
    if (auto r = server_->start(); !r) return r;
    auto p = Proxy::start(server_->port(), seed_, options_.fault_rate);
    if (!p) return p.error();
    proxy_ = std::move(p).value();
    proxy_url_ = "http://127.0.0.1:" + std::to_string(proxy_->port());
    auto t = transport_to(server_->base_url());
    if (!t) return t.error();
    api_ = std::make_unique<Api>(std::move(t).value());

    const int n = std::clamp(options_.devices, 2, 4);
    for (int i = 0; i < n; ++i) {
      Device d;
      d.user = so.users[static_cast<std::size_t>(i) + 1].name;
      d.kec = so.users[static_cast<std::size_t>(i) + 1].scopes[0];
      d.path = server_->dir() + "/device-" + std::to_string(i) + ".db";
      if (auto r = open_store(d); !r) return r;
      auto direct = transport_to(server_->base_url());
      if (!direct) return direct.error();
      auto login = fieldsync::login(*d.store, **direct, d.user, server_->password(d.user));
      if (!login)
        return Error(login.error().code, "login " + d.user + ": " + login.error().message);
      auto token = d.store->setting("token");
      if (!token || !token->has_value()) return Error(Errc::internal, "no token after login");
      auto forms = api_->call("GET", "/v1/forms", {}, **token);
      if (!forms) return forms.error();
      for (const auto& f : forms->at("forms")) {
        auto form = Form::parse(f);
        if (!form) return form.error();
        if (auto r = d.store->import_form(*form); !r) return r;
      }
      devices_.push_back(std::move(d));
    }
    return {};
  }

  // A sync through the faulty link: in this process, or in a forked child that is
  // SIGKILLed at a random moment (and the server with it, sometimes).
  Result<void> chaotic_sync(Device& d) {
    if (auto r = note_outbox(d); !r) return r;
    const SyncOptions so = chaos_sync_options(seed_ + report_.device_kills + 1);
    if (uniform() >= options_.device_kill_rate) {
      auto t = transport_to(proxy_url_);
      if (!t) return t.error();
      (void)fieldsync::sync(*d.store, **t, so);  // failures are expected here
      return {};
    }
    d.store.reset();
    const pid_t child = fork();
    if (child < 0) return Error(Errc::io, "fork failed");
    if (child == 0) {
      StoreOptions o;
      o.path = d.path;
      auto s = Store::open(o);
      auto t = transport_to(proxy_url_);
      if (!s || !t) _exit(2);
      auto r = fieldsync::sync(**s, **t, so);
      _exit(r ? 0 : 1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(rng_() % 250));
    const bool kill_server = uniform() < options_.server_kill_rate;
    if (kill_server) {
      server_->kill9();
      ++report_.server_kills;
    }
    if (still_running(child)) {
      kill(child, SIGKILL);
      ++report_.device_kills;
    }
    int status = 0;
    waitpid(child, &status, 0);
    if (kill_server) {
      if (auto r = server_->start(server_->port()); !r)
        return Error(r.error().code, "server restart: " + r.error().message);
    }
    return open_store(d);
  }

  // Faults off: every device syncs directly with the server until a full pass
  // sends and receives nothing.
  Result<void> settle() {
    SyncOptions so = chaos_sync_options(seed_);
    so.batch_size = 100;
    so.pull_limit = 200;
    so.max_attempts = 5;
    for (int pass = 0; pass < 12; ++pass) {
      bool quiet = true;
      for (auto& d : devices_) {
        if (auto r = note_outbox(d); !r) return r;
        auto t = transport_to(server_->base_url());
        if (!t) return t.error();
        auto p = fieldsync::sync(*d.store, **t, so);
        if (!p) {
          quiet = false;
          last_error_ = d.user + ": " + p.error().to_string();
        } else if (p->sent != 0 || p->received != 0) {
          quiet = false;
        }
      }
      if (quiet) return {};
    }
    report_.converged = false;
    report_.problems.push_back("seed " + std::to_string(seed_) +
                               ": devices never quiet; last error: " + last_error_);
    return {};
  }

  void problem(const std::string& what) {
    if (report_.problems.size() < 50)
      report_.problems.push_back("seed " + std::to_string(seed_) + ": " + what);
  }

  // A change that never left the phone because the officer deleted its record
  // before any change of it was sent: the server never heard of the record, and
  // the phone shows it deleted and never synced.
  static bool withdrawn(Device& d, const std::string& record,
                        const std::set<std::string>& server_records) {
    if (server_records.count(record)) return false;
    auto view = d.store->get(record);
    return view && view->deleted && view->version == 0;
  }

  Result<void> audit() {
    auto admin = api_->login("admin", server_->password("admin"));
    if (!admin) return admin.error();
    std::map<std::string, int> origins;
    std::set<std::string> origins_by_record;  // records the server's log names
    std::int64_t since = 0;
    for (;;) {
      auto page = api_->call("POST", "/v1/sync",
                             {{"device_id", "chaos-audit"},
                              {"changes", nlohmann::json::array()},
                              {"since", since},
                              {"limit", 500}},
                             *admin);
      if (!page) return page.error();
      for (const auto& e : page->at("changes")) {
        ++origins[e.at("origin").get<std::string>()];
        origins_by_record.insert(e.at("record").get<std::string>());
      }
      const std::int64_t cursor = page->at("cursor").get<std::int64_t>();
      if (!page->at("more").get<bool>() || cursor <= since) break;
      since = cursor;
    }
    std::set<std::string> candidates;
    std::int64_t after = 0;
    for (;;) {
      auto page =
          api_->call("GET", "/v1/conflicts?limit=100&after=" + std::to_string(after), {}, *admin);
      if (!page) return page.error();
      for (const auto& c : page->at("conflicts")) {
        after = c.at("id").get<std::int64_t>();
        if (c.at("kind") == "duplicate_record") continue;
        for (const auto& cand : c.at("candidates"))
          candidates.insert(cand.at("change").get<std::string>());
      }
      if (!page->at("more").get<bool>()) break;
    }
    std::map<std::string, int> quarantined;
    after = 0;
    for (;;) {
      auto page =
          api_->call("GET", "/v1/quarantine?limit=1000&after=" + std::to_string(after), {}, *admin);
      if (!page) return page.error();
      for (const auto& q : page->at("rejected")) {
        after = q.at("id").get<std::int64_t>();
        ++quarantined[q.at("change_id").get<std::string>()];
      }
      if (!page->at("more").get<bool>()) break;
    }

    std::set<std::string> all_accepted;
    for (auto& d : devices_) {
      std::set<std::string> rejected_here;
      auto rej = d.store->rejected();
      if (!rej) return rej.error();
      for (const auto& r : *rej) rejected_here.insert(r.change.id);
      for (const auto& [id, record] : d.accepted) {
        all_accepted.insert(id);
        ++report_.changes_made;
        const int in_log = origins.count(id) ? origins[id] : 0;
        const int in_quarantine = quarantined.count(id) ? quarantined[id] : 0;
        const int outcomes = in_log + in_quarantine;
        if (outcomes == 0 && rejected_here.count(id) == 0 &&
            withdrawn(d, record, origins_by_record)) {
          // docs/storage.md: deleting a record the server never saw (no change of
          // it ever sent) drops its pending changes on the phone. Counted apart.
          ++report_.withdrawn;
        } else if (outcomes == 0 && rejected_here.count(id) == 0) {
          ++report_.lost;
          problem("change " + id + " of " + d.user + " lost");
        } else if (outcomes > 1) {
          ++report_.duplicated;
          problem("change " + id + " of " + d.user + ": " + std::to_string(in_log) +
                  " log entries, " + std::to_string(in_quarantine) + " quarantine rows");
        } else if (in_log == 1) {
          ++(candidates.count(id) ? report_.conflicts : report_.applied);
        } else {
          ++report_.rejected;
        }
      }
      if (auto r = check_device(d); !r) return r;
    }
    for (const auto& [origin, n] : origins) {
      if (origin.rfind("admin:", 0) == 0 || all_accepted.count(origin) != 0) continue;
      ++report_.duplicated;  // applied, yet no device ever accepted it
      problem("log entry with unknown origin " + origin + " (x" + std::to_string(n) + ")");
    }
    return {};
  }

  // Invariants 3 and 4 for one device: nothing pending, the same records as the
  // server shows its user, nothing outside the user's kecamatan on either side.
  Result<void> check_device(Device& d) {
    auto token = api_->login(d.user, server_->password(d.user));
    if (!token) return token.error();
    std::map<std::string, nlohmann::json> server;
    std::int64_t since = 0;
    for (;;) {
      auto page =
          api_->call("GET", "/v1/records?limit=100&since=" + std::to_string(since), {}, *token);
      if (!page) return page.error();
      for (const auto& r : page->at("records")) server[r.at("id").get<std::string>()] = r;
      const std::int64_t cursor = page->at("cursor").get<std::int64_t>();
      if (!page->at("more").get<bool>() || cursor <= since) break;
      since = cursor;
    }
    RecordQuery q;
    q.include_deleted = true;
    auto local = d.store->list(q);
    if (!local) return local.error();
    auto status = d.store->status();
    if (!status) return status.error();
    bool same = status->pending == 0;
    if (!same) problem(d.user + ": " + std::to_string(status->pending) + " changes pending");
    std::set<std::string> seen;
    for (const auto& mine : *local) {
      seen.insert(mine.id);
      if (!in_scope(mine.scope, d.kec)) problem(d.user + " holds out-of-scope " + mine.id);
      same = same && in_scope(mine.scope, d.kec);
      auto it = server.find(mine.id);
      // A record created and deleted before any sync leaves a local tombstone the
      // server never heard of (its changes cancelled out in the outbox): no data.
      if (it == server.end() && mine.deleted && mine.version == 0 && mine.fields.empty()) continue;
      if (it == server.end()) {
        same = false;
        problem(d.user + ": " + mine.id + " on the device only: " + mine.to_json().dump());
        continue;
      }
      const auto& srv = it->second;
      bool rec_same = !mine.dirty && mine.scope == srv.at("scope").get<std::string>() &&
                      mine.deleted == srv.at("deleted").get<bool>();
      std::set<std::string> names;
      for (const auto& [name, _] : mine.fields) names.insert(name);
      for (const auto& [name, _] : srv.at("fields").items()) names.insert(name);
      for (const auto& name : names) {
        auto f = mine.fields.find(name);
        const nlohmann::json ours = f == mine.fields.end() ? nlohmann::json() : f->second.value;
        if (!values_equal(ours, field_value(srv, name))) rec_same = false;
      }
      if (!rec_same) problem(d.user + ": " + mine.id + " differs from the server");
      same = same && rec_same;
    }
    for (const auto& [id, srv] : server) {
      if (!in_scope(srv.at("scope").get<std::string>(), d.kec)) {
        same = false;
        problem("server showed " + d.user + " out-of-scope " + id);
      }
      if (seen.count(id) == 0) {
        same = false;
        problem(d.user + ": " + id + " on the server only");
      }
    }
    if (!same) report_.converged = false;
    return {};
  }

  const ChaosOptions& options_;
  std::uint64_t seed_;
  ChaosReport& report_;
  std::mt19937_64 rng_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Proxy> proxy_;
  std::unique_ptr<Api> api_;
  std::string proxy_url_;
  std::vector<Device> devices_;
  std::string last_error_;
};

}  // namespace

nlohmann::json ChaosReport::to_json() const {
  return {{"runs", runs},
          {"seeds", seeds},
          {"faults_injected", faults_injected},
          {"server_kills", server_kills},
          {"device_kills", device_kills},
          {"changes_made", changes_made},
          {"applied", applied},
          {"conflicts", conflicts},
          {"rejected", rejected},
          {"withdrawn", withdrawn},
          {"lost", lost},
          {"duplicated", duplicated},
          {"converged", converged}};
}

Result<void> run_chaos(const ChaosOptions& options, ChaosReport& report) {
  const auto start = Clock::now();
  std::vector<std::uint64_t> seeds = options.seeds;
  std::uint64_t next = seeds.empty() ? 1 : seeds.back() + 1;
  for (std::size_t i = 0;; ++i) {
    std::uint64_t seed = 0;
    if (i < seeds.size()) {
      seed = seeds[i];
    } else if (options.budget.count() > 0 && Clock::now() - start < options.budget) {
      seed = next++;
    } else {
      break;
    }
    Run run(options, seed, report);
    report.seeds.push_back(seed);
    ++report.runs;
    if (auto r = run.go(); !r)
      return Error(r.error().code, "seed " + std::to_string(seed) + ": " + r.error().message);
  }
  return {};
}

}  // namespace fieldsync::chaos
