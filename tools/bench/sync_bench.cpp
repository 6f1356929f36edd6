// `fieldsync-bench sync`: the sync path end to end against a real fieldsync-server
// process on loopback: push and pull rates against bare SQLite inserts, bytes per
// change, an incremental sync, 100 concurrent devices, and peak memory (issue #3).
#ifdef FIELDSYNC_BENCH_SYNC
#include <fcntl.h>
#include <malloc.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include "bench.hpp"
#include "bench_common.hpp"
#include "fieldsync/http_transport.hpp"
#include "fieldsync/store.hpp"
#include "fieldsync/sync.hpp"

extern char** environ;

namespace fieldsync::bench {
namespace {

namespace fs = std::filesystem;

constexpr const char* kOfficer = "bench-officer";
constexpr const char* kPassword = "bench-pw-Xq7v2Lk9";

struct SyncArgs {
  std::int64_t n = 100000;
  std::int64_t devices = 100;
  std::int64_t per_device = 500;
  std::string server_bin;
  std::string dir;
  std::string form_file;
  std::uint64_t seed = 1;
  bool keep = false;
};

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Starts argv (no shell) with stdin from `in_file` (or /dev/null) and stdout and
// stderr into files; returns the pid.
pid_t spawn(const std::vector<std::string>& args, const std::string& in_file, const fs::path& out,
            const fs::path& err) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, in_file.empty() ? "/dev/null" : in_file.c_str(),
                                   O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) die("cannot start " + args[0] + ": " + std::strerror(rc));
  return pid;
}

// Peak resident memory (VmHWM) of a process in MiB, or -1 when unknown.
double peak_rss_mb(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}

// Makes this process's VmHWM start again from its current RSS (Linux >= 4.0).
void reset_peak_rss() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

// The real server: init, users and form through its CLI, then `serve` on
// 127.0.0.1:0. Stopped with SIGTERM when destroyed.
class Server {
 public:
  Server(std::string bin, fs::path dir) : bin_(std::move(bin)), dir_(std::move(dir)) {}
  ~Server() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void cli(std::vector<std::string> args, const std::string& input = {}) {
    args.insert(args.begin(), bin_);
    args.push_back("--db");
    args.push_back((dir_ / "server.db").string());
    std::string in_file;
    if (!input.empty()) {
      in_file = (dir_ / "cli.in").string();
      std::ofstream(in_file) << input;
    }
    pid_t pid = spawn(args, in_file, dir_ / "cli.out", dir_ / "cli.err");
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      die("fieldsync-server " + args[1] + " failed: " + slurp(dir_ / "cli.err"));
  }

  void serve() {
    fs::path out = dir_ / "serve.out";
    pid_ = spawn({bin_, "serve", "--db", (dir_ / "server.db").string(), "--listen", "127.0.0.1:0",
                  "--quiet"},
                 {}, out, dir_ / "serve.err");
    const std::string marker = "listening on ";
    for (auto t0 = Clock::now(); seconds_since(t0) < 30;) {
      std::string text = slurp(out);
      auto at = text.find(marker);
      auto eol = text.find('\n', at == std::string::npos ? 0 : at);
      if (at != std::string::npos && eol != std::string::npos) {
        url_ = "http://" + text.substr(at + marker.size(), eol - at - marker.size());
        return;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        die("the server exited before listening: " + slurp(dir_ / "serve.err"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    die("the server did not print its port within 30 s");
  }

  const std::string& url() const { return url_; }
  double peak_rss_mb() const { return bench::peak_rss_mb(std::to_string(pid_)); }

 private:
  std::string bin_;
  fs::path dir_;
  pid_t pid_ = -1;
  std::string url_;
};

// Wraps a transport: counts body bytes each way and times every exchange.
// Counts what goes over the wire; the transports another() makes count into the
// same totals (sync() may have two requests out at once).
class MeteredTransport : public Transport {
 public:
  explicit MeteredTransport(std::unique_ptr<Transport> inner)
      : MeteredTransport(std::move(inner), std::make_shared<Meter>()) {}
  Result<HttpResponse> send(const HttpRequest& request,
                            std::chrono::milliseconds timeout) override {
    auto t0 = Clock::now();
    auto r = inner_->send(request, timeout);
    std::lock_guard lock(meter_->mutex);
    meter_->latencies_ms.push_back(seconds_since(t0) * 1000.0);
    meter_->bytes_up += static_cast<std::int64_t>(request.body.size());
    if (r) meter_->bytes_down += static_cast<std::int64_t>(r->body.size());
    return r;
  }
  std::unique_ptr<Transport> another() override {
    auto inner = inner_->another();
    if (!inner) return nullptr;
    return std::unique_ptr<Transport>(new MeteredTransport(std::move(inner), meter_));
  }
  void reset() {
    std::lock_guard lock(meter_->mutex);
    meter_->bytes_up = meter_->bytes_down = 0;
    meter_->latencies_ms.clear();
  }
  // Read when no sync runs.
  std::int64_t bytes_up() const { return meter_->bytes_up; }
  std::int64_t bytes_down() const { return meter_->bytes_down; }
  const std::vector<double>& latencies_ms() const { return meter_->latencies_ms; }

 private:
  struct Meter {
    std::mutex mutex;
    std::int64_t bytes_up = 0;
    std::int64_t bytes_down = 0;
    std::vector<double> latencies_ms;
  };
  MeteredTransport(std::unique_ptr<Transport> inner, std::shared_ptr<Meter> meter)
      : inner_(std::move(inner)), meter_(std::move(meter)) {}
  std::unique_ptr<Transport> inner_;
  std::shared_ptr<Meter> meter_;
};

struct Device {
  std::unique_ptr<Store> store;
  std::unique_ptr<MeteredTransport> transport;
};

Device open_device(const fs::path& path, const Form& form, const std::string& url,
                   const std::string& user, const std::string& password) {
  Device d;
  StoreOptions o;
  o.path = path.string();
  d.store = must(Store::open(o), "open device store");
  must(d.store->import_form(form), "import form");
  HttpTransportOptions t;
  t.base_url = url;
  d.transport = std::make_unique<MeteredTransport>(must(make_http_transport(t), "transport"));
  must(login(*d.store, *d.transport, user, password), "login");
  d.transport->reset();
  return d;
}

// Runs one full sync and returns its seconds; dies unless every change was applied.
double timed_sync(Device& d, std::int64_t expect_sent, SyncProgress* out = nullptr) {
  auto t0 = Clock::now();
  auto p = must(sync(*d.store, *d.transport), "sync");
  double s = seconds_since(t0);
  if (p.sent != expect_sent || p.applied != expect_sent)
    die("sync sent " + std::to_string(p.sent) + " and applied " + std::to_string(p.applied) +
        " changes, expected " + std::to_string(expect_sent));
  if (out) *out = p;
  return s;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

std::string default_server_bin() {
  std::error_code ec;
  fs::path self = fs::canonical("/proc/self/exe", ec);
  // <build>/tools/bench/fieldsync-bench -> <build>/server/fieldsync-server
  if (!ec)
    return (self.parent_path().parent_path().parent_path() / "server/fieldsync-server").string();
  return "fieldsync-server";
}

// The scope of concurrent device i: a kecamatan of its own outside 14.03.
std::string concurrent_scope(std::int64_t i) {
  char code[16];
  std::snprintf(code, sizeof code, "14.%02d.%02d", static_cast<int>(10 + i / 50),
                static_cast<int>(1 + i % 50));
  return code;
}

struct Concurrent {
  double rate = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double seconds = 0;
  std::int64_t requests = 0;
  std::int64_t retries = 0;  // attempts repeated after a timeout or a 5xx/429
};

// `devices` officers, each with its own scope, store and transport, sync
// `per_device` new records each, all at once. Users, logins and saves are not timed.
Concurrent run_concurrent(Server& server, const fs::path& dir, const Form& form,
                          const SyncArgs& a) {
  std::vector<Device> devices;
  auto base = make_records(form, a.per_device, a.seed + 1);
  for (std::int64_t i = 0; i < a.devices; ++i) {
    std::string user = "bench-dev-" + std::to_string(i);
    std::string scope = concurrent_scope(i);
    server.cli({"user", "add", user, "--role", "officer", "--scope", scope, "--password-stdin"},
               std::string(kPassword) + "\n");
    devices.push_back(open_device(dir / ("dev-" + std::to_string(i) + ".db"), form, server.url(),
                                  user, kPassword));
    auto records = base;
    for (std::size_t j = 0; j < records.size(); ++j) {
      char code[32];
      std::snprintf(code, sizeof code, "%s.%04d", scope.c_str(), static_cast<int>(2001 + j / 7));
      records[j].scope = code;
      records[j].fields["desa_code"] = code;
      records[j].fields["period"] = std::to_string(2020 + j % 7);
    }
    must(devices.back().store->put_many(records), "put_many (concurrent device)");
  }
  std::vector<std::thread> threads;
  std::vector<std::string> errors(devices.size());
  std::vector<std::int64_t> retries(devices.size(), 0);
  auto t0 = Clock::now();
  for (std::size_t i = 0; i < devices.size(); ++i) {
    threads.emplace_back([&, i] {
      auto p = sync(*devices[i].store, *devices[i].transport);
      if (!p)
        errors[i] = p.error().to_string();
      else if (p->applied != a.per_device)
        errors[i] = "applied " + std::to_string(p->applied);
      else
        retries[i] = p->retries;
    });
  }
  for (auto& t : threads) t.join();
  Concurrent c;
  c.seconds = seconds_since(t0);
  for (const auto& e : errors)
    if (!e.empty()) die("concurrent sync: " + e);
  for (auto r : retries) c.retries += r;
  std::vector<double> all;
  for (const auto& d : devices)
    all.insert(all.end(), d.transport->latencies_ms().begin(), d.transport->latencies_ms().end());
  c.requests = static_cast<std::int64_t>(all.size());
  c.rate = static_cast<double>(a.devices * a.per_device) / c.seconds;
  c.p50_ms = percentile(all, 0.50);
  c.p99_ms = percentile(all, 0.99);
  return c;
}

void run_sync(const SyncArgs& a) {
  if (a.n < 100 || a.devices < 1 || a.per_device < 1 || a.per_device > 7 * 7999)
    die("--n must be at least 100, --devices and --per-device at least 1");
  fs::path dir = a.dir.empty() ? fs::temp_directory_path() /
                                     ("fieldsync-syncbench-" + std::to_string(::getpid()))
                               : fs::path(a.dir);
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string form_path = a.form_file.empty()
                              ? std::string(FIELDSYNC_SOURCE_DIR) + "/forms/kla-desa.json"
                              : a.form_file;
  std::string bin = a.server_bin.empty() ? default_server_bin() : a.server_bin;
  if (::access(bin.c_str(), X_OK) != 0) die("no server binary at " + bin + " (use --server-bin)");
  Form form = load_form(form_path);

  double bare = 0;
  {
    auto records = make_records(form, a.n, a.seed);
    bare = run_bare((dir / "bare.db").string(), records, 1000);
  }
  std::cout << "sync: " << a.n << " records of form " << form.id << ", server " << bin
            << ", files in " << dir.string() << "\n"
            << "  bare SQLite inserts (JSON rows):  " << static_cast<std::int64_t>(bare)
            << " records/s\n";

  Server server(bin, dir);
  server.cli({"init"});
  server.cli({"user", "add", kOfficer, "--role", "officer", "--scope", "14.03", "--password-stdin"},
             std::string(kPassword) + "\n");
  server.cli({"user", "add", "bench-admin", "--role", "admin", "--password-stdin"},
             std::string(kPassword) + "\n");
  server.cli({"form", "publish", form_path});
  server.serve();
  std::cout << "  server listening at " << server.url() << "\n";

  // Phase 1: push. The records are saved (not timed) and freed before the clock
  // starts, so the device's peak memory below is the sync's, not the generator's.
  Device first = open_device(dir / "device-1.db", form, server.url(), kOfficer, kPassword);
  std::vector<std::string> ids;
  std::vector<std::string> scopes;
  {
    auto records = make_records(form, a.n, a.seed);
    for (std::size_t i = 0; i < records.size(); i += 1000) {
      std::vector<PutRequest> chunk(
          records.begin() + static_cast<std::ptrdiff_t>(i),
          records.begin() + static_cast<std::ptrdiff_t>(std::min(records.size(), i + 1000)));
      auto got = must(first.store->put_many(chunk), "put_many");
      ids.insert(ids.end(), got.begin(), got.end());
      for (const auto& r : chunk) scopes.push_back(r.scope);
    }
  }
  ::malloc_trim(0);
  reset_peak_rss();
  double rss_before = peak_rss_mb("self");
  double push_s = timed_sync(first, a.n);
  double push_rate = static_cast<double>(a.n) / push_s;
  double up_per_change =
      static_cast<double>(first.transport->bytes_up()) / static_cast<double>(a.n);
  std::cout << "  push (device 1, full sync):       " << static_cast<std::int64_t>(push_rate)
            << " changes/s (" << push_s << " s, " << first.transport->latencies_ms().size()
            << " round trips, pipelined, up to two out, one of them pulling)\n";

  // Phase 2: pull into a fresh device.
  Device second = open_device(dir / "device-2.db", form, server.url(), kOfficer, kPassword);
  SyncProgress pulled;
  auto t0 = Clock::now();
  pulled = must(sync(*second.store, *second.transport), "pull");
  double pull_s = seconds_since(t0);
  if (pulled.received != a.n)
    die("the fresh device received " + std::to_string(pulled.received) + " entries, expected " +
        std::to_string(a.n));
  double pull_rate = static_cast<double>(a.n) / pull_s;
  double down_per_change =
      static_cast<double>(second.transport->bytes_down()) / static_cast<double>(a.n);
  double device_rss = peak_rss_mb("self");
  double server_rss_sync = server.peak_rss_mb();
  std::cout << "  pull (fresh device 2):            " << static_cast<std::int64_t>(pull_rate)
            << " changes/s (" << pull_s << " s)\n"
            << "  bytes per change:                 up " << static_cast<std::int64_t>(up_per_change)
            << ", down " << static_cast<std::int64_t>(down_per_change) << "\n"
            << "  device peak RSS during 1-2:       " << device_rss << " MiB (RSS before "
            << rss_before << " MiB, growth " << device_rss - rss_before << " MiB)\n"
            << "  server peak RSS after 1-2:        " << server_rss_sync << " MiB\n";

  // Phase 3: incremental sync after changing 1% of the records on device 1.
  std::int64_t changed = std::max<std::int64_t>(1, a.n / 100);
  {
    std::vector<PutRequest> edits;
    for (std::int64_t i = 0; i < changed; ++i) {
      PutRequest p;
      p.form = form.id;
      auto k = static_cast<std::size_t>(i * 100 % a.n);
      p.record = ids[k];
      p.scope = scopes[k];
      p.fields["officer_notes"] = "diperbarui " + std::to_string(i);
      edits.push_back(std::move(p));
    }
    must(first.store->put_many(edits), "put_many (edits)");
  }
  double incr_s = timed_sync(first, changed);
  double incremental_ratio = incr_s / push_s;
  std::cout << "  incremental (" << changed << " changed):        " << incr_s
            << " s = " << incremental_ratio * 100 << "% of the full push (target <= 3%)\n";

  // Phase 4: concurrent devices.
  auto c = run_concurrent(server, dir, form, a);
  std::cout << "  concurrent (" << a.devices << " x " << a.per_device
            << "):           " << static_cast<std::int64_t>(c.rate) << " changes/s in " << c.seconds
            << " s, request latency p50 " << c.p50_ms << " ms, p99 " << c.p99_ms << " ms; "
            << c.requests << " requests, " << c.retries
            << " of them retries (attempt timeout 30 s)\n";

  double server_rss = server.peak_rss_mb();
  double push_ratio = push_rate / bare;
  double pull_ratio = pull_rate / bare;
  std::cout << "  server peak RSS:                  " << server_rss << " MiB\n"
            << "  push/bare " << push_ratio << ", pull/bare " << pull_ratio
            << " (targets >= 0.2)\n";
  if (!a.keep && a.dir.empty()) {
    first = {};
    second = {};
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::cout << json{{"bench", "sync"},
                    {"n", a.n},
                    {"push_rate", push_rate},
                    {"pull_rate", pull_rate},
                    {"bare_rate", bare},
                    {"push_ratio", push_ratio},
                    {"pull_ratio", pull_ratio},
                    {"bytes_per_change_up", up_per_change},
                    {"bytes_per_change_down", down_per_change},
                    {"incremental_ratio", incremental_ratio},
                    {"concurrent_rate", c.rate},
                    {"p50_ms", c.p50_ms},
                    {"p99_ms", c.p99_ms},
                    {"concurrent_retries", c.retries},
                    {"device_rss_mb", device_rss},
                    {"device_rss_growth_mb", device_rss - rss_before},
                    {"server_rss_mb_after_pull", server_rss_sync},
                    {"server_rss_mb", server_rss}}
                   .dump()
            << std::endl;
}

}  // namespace

void register_sync(CLI::App& app) {
  auto args = std::make_shared<SyncArgs>();
  auto* cmd = app.add_subcommand("sync", "Sync rates against a real server on loopback");
  cmd->add_option("--n", args->n, "Records pushed and pulled")->capture_default_str();
  cmd->add_option("--devices", args->devices, "Devices in the concurrent phase")
      ->capture_default_str();
  cmd->add_option("--per-device", args->per_device, "Changes per concurrent device")
      ->capture_default_str();
  cmd->add_option("--server-bin", args->server_bin,
                  "fieldsync-server binary (default: <build>/server/fieldsync-server)");
  cmd->add_option("--dir", args->dir, "Directory for all files (default: a temporary one)");
  cmd->add_option("--form", args->form_file, "Form file (default: forms/kla-desa.json)");
  cmd->add_option("--seed", args->seed, "Seed of the generated values")->capture_default_str();
  cmd->add_flag("--keep", args->keep, "Keep the temporary directory");
  cmd->callback([args] { run_sync(*args); });
}

}  // namespace fieldsync::bench
#endif  // FIELDSYNC_BENCH_SYNC
