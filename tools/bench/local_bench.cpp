// `fieldsync-bench local`: how fast the device store saves KLA-shaped records,
// measured against the raw SQLite insert rate on the same machine. Both sides use
// WAL with synchronous=FULL and one transaction per batch: the store with
// put_many (validation, outbox change, HLC, ids), the bare side with one prepared
// INSERT of the record as a JSON row. Also the single-save rate: one put per
// transaction, as an officer's "save" button does it.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include "bench.hpp"
#include "bench_common.hpp"
#include "fieldsync/store.hpp"

namespace fieldsync::bench {
namespace {

namespace fs = std::filesystem;

struct LocalArgs {
  std::int64_t n = 100000;
  std::int64_t batch = 1000;
  std::int64_t single = 2000;
  std::string dir;
  std::string form_file;
  std::uint64_t seed = 1;
  bool keep = false;
};

double run_store(const std::string& path, const Form& form, const std::vector<PutRequest>& records,
                 std::int64_t batch) {
  StoreOptions o;
  o.path = path;
  auto store = must(Store::open(o), "open store");
  must(store->import_form(form), "import form");
  // The batches are cut before the clock starts: copying requests is not saving.
  std::vector<std::vector<PutRequest>> chunks;
  for (std::size_t i = 0; i < records.size(); i += static_cast<std::size_t>(batch)) {
    auto end = std::min(records.size(), i + static_cast<std::size_t>(batch));
    chunks.emplace_back(records.begin() + static_cast<std::ptrdiff_t>(i),
                        records.begin() + static_cast<std::ptrdiff_t>(end));
  }
  auto t0 = Clock::now();
  for (const auto& chunk : chunks) must(store->put_many(chunk), "put_many");
  return static_cast<double>(records.size()) / seconds_since(t0);
}

double run_single(const std::string& path, const Form& form, const std::vector<PutRequest>& records,
                  std::int64_t n) {
  StoreOptions o;
  o.path = path;
  auto store = must(Store::open(o), "open store");
  must(store->import_form(form), "import form");
  n = std::min<std::int64_t>(n, static_cast<std::int64_t>(records.size()));
  auto t0 = Clock::now();
  for (std::int64_t i = 0; i < n; ++i)
    must(store->put(records[static_cast<std::size_t>(i)]), "put");
  return static_cast<double>(n) / seconds_since(t0);
}

void run_local(const LocalArgs& a) {
  if (a.n < 1 || a.batch < 1 || a.single < 0) die("--n and --batch must be at least 1");
  fs::path dir = a.dir.empty()
                     ? fs::temp_directory_path() / ("fieldsync-bench-" + std::to_string(::getpid()))
                     : fs::path(a.dir);
  fs::create_directories(dir);
  for (const char* f : {"store.db", "bare.db", "single.db"})
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(dir / (std::string(f) + suffix));

  std::string form_path = a.form_file.empty()
                              ? std::string(FIELDSYNC_SOURCE_DIR) + "/forms/kla-desa.json"
                              : a.form_file;
  Form form = load_form(form_path);
  auto records = make_records(form, a.n, a.seed);
  std::size_t fields = 0;
  for (const auto& r : records) fields += r.fields.size();
  std::cout << "local: " << a.n << " records of form " << form.id << " (" << form.fields.size()
            << " fields defined, " << fields / records.size() << " filled on average), batches of "
            << a.batch << ", in " << dir.string() << "\n";

  double bare = run_bare((dir / "bare.db").string(), records, a.batch);
  std::cout << "  bare SQLite inserts (JSON rows): " << static_cast<std::int64_t>(bare)
            << " records/s\n";
  double store = run_store((dir / "store.db").string(), form, records, a.batch);
  std::cout << "  store put_many:                  " << static_cast<std::int64_t>(store)
            << " records/s\n";
  double ratio = store / bare;
  std::cout << "  ratio store/bare:                " << ratio << " (target >= 0.5)\n";
  double single =
      a.single > 0 ? run_single((dir / "single.db").string(), form, records, a.single) : 0;
  std::cout << "  single saves (one transaction each, " << std::min(a.single, a.n)
            << "): " << static_cast<std::int64_t>(single) << " saves/s\n";
  if (!a.keep && a.dir.empty()) fs::remove_all(dir);
  std::cout << json{{"bench", "local"},          {"n", a.n},          {"batch", a.batch},
                    {"store_rate", store},       {"bare_rate", bare}, {"ratio", ratio},
                    {"single_save_rate", single}}
                   .dump()
            << std::endl;
}

}  // namespace

void register_local(CLI::App& app) {
  auto args = std::make_shared<LocalArgs>();
  auto* cmd = app.add_subcommand("local", "Store save rate against bare SQLite inserts");
  cmd->add_option("--n", args->n, "Records to save")->capture_default_str();
  cmd->add_option("--batch", args->batch, "Records per transaction")->capture_default_str();
  cmd->add_option("--single", args->single, "Saves for the single-save rate (0 = skip)")
      ->capture_default_str();
  cmd->add_option("--dir", args->dir,
                  "Directory for the database files (default: a temporary one)");
  cmd->add_option("--form", args->form_file, "Form file (default: forms/kla-desa.json)");
  cmd->add_option("--seed", args->seed, "Seed of the generated values")->capture_default_str();
  cmd->add_flag("--keep", args->keep, "Keep the temporary directory");
  cmd->callback([args] { run_local(*args); });
}

}  // namespace fieldsync::bench
