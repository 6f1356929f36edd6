// fieldsync-demo: the field day, against a running server. One device per
// kecamatan logs in as its officer and surveys villages offline; two editors change
// the same village indicator offline; everyone syncs; the demo then checks that
// every device holds exactly the server's data for its scope and shows the conflict.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "fieldsync/form.hpp"
#include "fieldsync/http_transport.hpp"
#include "fieldsync/store.hpp"
#include "fieldsync/sync.hpp"

namespace fieldsync {
namespace {

constexpr const char* kForm = "kla-desa";
constexpr const char* kPeriod = "2026";
constexpr std::chrono::seconds kTimeout{30};
constexpr const char* kContested = "children_with_birth_certificate";

struct DemoUser {
  std::string username;
  std::string password;
  std::string role;
  std::vector<std::string> scopes;
};

struct Options {
  std::string server;
  std::string users_file;
  std::string dir;
  std::string ca_file;
  int villages = 3;
};

// Reads the users file `fieldsync-server init --demo` writes: one JSON object per
// line with username, password, role and scopes.
Result<std::vector<DemoUser>> read_users(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error(Errc::io, "cannot read " + path);
  std::vector<DemoUser> users;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const json j = json::parse(line, nullptr, false);
    const std::string where = path + ":" + std::to_string(number);
    if (!j.is_object()) return Error(Errc::invalid_argument, where + ": not a JSON object");
    DemoUser u;
    const json* name = j.contains("username") ? &j["username"]
                       : j.contains("user")   ? &j["user"]
                                              : nullptr;
    if (name == nullptr || !name->is_string() || !j.contains("password") ||
        !j["password"].is_string())
      return Error(Errc::invalid_argument, where + ": needs \"username\" and \"password\" strings");
    u.username = name->get<std::string>();
    u.password = j["password"].get<std::string>();
    u.role = j.value("role", "officer");
    if (j.contains("scopes") && j["scopes"].is_array()) {
      for (const auto& s : j["scopes"])
        if (s.is_string()) u.scopes.push_back(s.get<std::string>());
    }
    users.push_back(std::move(u));
  }
  if (users.empty()) return Error(Errc::invalid_argument, path + " lists no users");
  return users;
}

// JSON calls the sync engine does not make (forms, records, conflicts).
class Api {
 public:
  explicit Api(Transport& transport) : transport_(transport) {}

  Result<json> get(const std::string& target, const std::string& token) {
    HttpRequest req{"GET", target, {{"Accept", "application/json"}}, {}};
    if (!token.empty()) req.headers.emplace_back("Authorization", "Bearer " + token);
    auto res = transport_.send(req, kTimeout);
    if (!res) return std::move(res).error();
    json body = json::parse(res->body, nullptr, false);
    if (res->status != 200) {
      std::string code = "http_" + std::to_string(res->status);
      std::string message;
      if (body.is_object() && body.contains("error") && body["error"].is_object()) {
        code = body["error"].value("code", code);
        message = body["error"].value("message", "");
      }
      const Errc errc = res->status == 404 ? Errc::not_found : errc_from_wire_code(code);
      return Error(
          errc, "GET " + target + ": " + std::to_string(res->status) + " " + code + " " + message);
    }
    if (body.is_discarded())
      return Error(Errc::protocol, "GET " + target + ": the answer is not JSON");
    return body;
  }

 private:
  Transport& transport_;
};

struct Device {
  std::string label;  // "14.03.01 officer.bengkalis"
  std::string kecamatan;
  DemoUser user;
  std::unique_ptr<Store> store;
  std::unique_ptr<Transport> transport;
  std::string token;
};

[[noreturn]] void die(const std::string& what, const Error& e) {
  std::cerr << "fieldsync-demo: " << what << ": " << e.to_string() << "\n";
  std::exit(2);
}

template <class T>
T must(Result<T> r, const std::string& what) {
  if (!r) die(what, r.error());
  return std::move(r).value();
}

void must(Result<void> r, const std::string& what) {
  if (!r) die(what, r.error());
}

std::string village_code(const std::string& kecamatan, int n) {
  return kecamatan + (n < 10 ? ".200" : ".20") + std::to_string(n);
}

// Plausible survey answers for one village, the same on every run.
json survey_answers(const std::string& code) {
  std::mt19937 rng(static_cast<std::uint32_t>(std::hash<std::string>{}(code)));
  auto between = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const int children = between(300, 1500);
  const int births = between(10, 60);
  const int households = between(200, 900);
  const int under_five = between(60, 250);
  return json{{"desa_code", code},
              {"period", kPeriod},
              {"children_total", children},
              {kContested, children * between(70, 98) / 100},
              {"births", births},
              {"births_in_health_facility", births * between(60, 100) / 100},
              {"children_under_five", under_five},
              {"stunted_children_under_five", under_five * between(5, 30) / 100},
              {"households_total", households},
              {"households_safe_water", households * between(50, 95) / 100},
              {"active_posyandu", between(1, 6)},
              {"has_forum_anak", between(0, 1) == 1},
              {"has_kla_task_force", between(0, 1) == 1},
              {"has_patbm", between(0, 1) == 1}};
}

void open_device(Device& d, const Options& o) {
  namespace fs = std::filesystem;
  const std::string path = o.dir + "/" + d.kecamatan + "-" + d.user.username + ".db";
  // Fresh phones every run: the demo owns these files.
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
  StoreOptions so;
  so.path = path;
  d.store = must(Store::open(so), "open " + path);
  d.transport = must(make_http_transport(HttpTransportOptions{o.server, o.ca_file}), "server URL");
  auto login =
      must(fieldsync::login(*d.store, *d.transport, d.user.username, d.user.password, kTimeout),
           "log in as " + d.user.username);
  d.token = login.token;
  Api api(*d.transport);
  const json forms = must(api.get("/v1/forms", d.token), "fetch the forms");
  int imported = 0;
  for (const auto& f : forms.at("forms")) {
    must(d.store->import_form(must(Form::parse(f), "form from the server")), "import a form");
    ++imported;
  }
  std::cout << "  " << d.label << ": logged in (" << login.user.role << "), " << imported
            << " form(s), store " << path << "\n";
}

SyncProgress run_sync(Device& d) {
  SyncOptions so;
  so.user_agent = "fieldsync-demo/0.1";
  so.on_progress = [&](const SyncProgress& p) {
    std::cout << "    " << d.label << ": round trip " << p.round_trips << ": sent " << p.sent
              << " (applied " << p.applied << ", conflicts " << p.conflicts << ", rejected "
              << p.rejected << "), received " << p.received << ", cursor " << p.cursor << "\n";
  };
  return must(fieldsync::sync(*d.store, *d.transport, so), "sync of " + d.label);
}

// Records the server shows this device's user (all pages), by id.
std::map<std::string, json> server_records(Device& d) {
  Api api(*d.transport);
  std::map<std::string, json> out;
  std::int64_t since = 0;
  for (;;) {
    const json page =
        must(api.get("/v1/records?since=" + std::to_string(since) + "&limit=500", d.token),
             "list the server's records");
    for (const auto& r : page.at("records")) out[r.at("id").get<std::string>()] = r;
    const auto cursor = page.at("cursor").get<std::int64_t>();
    if (!page.value("more", false) || cursor <= since) break;
    since = cursor;
  }
  return out;
}

json field_value(const json& record, const std::string& name) {
  const json& fields = record.at("fields");
  if (!fields.contains(name)) return nullptr;
  const json& f = fields.at(name);
  return f.is_object() && f.contains("value") ? f.at("value") : f;
}

// Compares the device's visible data with the server's; prints and returns the
// differences.
int compare(Device& d) {
  const auto theirs = server_records(d);
  RecordQuery q;
  q.include_deleted = true;
  const auto mine = must(d.store->list(q), "list the device's records");
  int differences = 0;
  auto differ = [&](const std::string& what) {
    if (differences++ < 5) std::cout << "      difference: " << what << "\n";
  };
  std::set<std::string> seen;
  for (const auto& r : mine) {
    seen.insert(r.id);
    auto it = theirs.find(r.id);
    if (it == theirs.end()) {
      differ("record " + r.id + " is on the device only");
      continue;
    }
    if (r.deleted != it->second.value("deleted", false))
      differ("record " + r.id + " deleted on one side only");
    if (r.dirty) differ("record " + r.id + " still has unsynced edits");
    std::set<std::string> names;
    for (const auto& [name, _] : r.fields) names.insert(name);
    for (const auto& [name, _] : it->second.at("fields").items()) names.insert(name);
    for (const auto& name : names) {
      auto f = r.fields.find(name);
      const json local = f == r.fields.end() ? json(nullptr) : f->second.value;
      const json remote = field_value(it->second, name);
      if (!values_equal(local, remote))
        differ(r.id + "." + name + ": device " + local.dump() + ", server " + remote.dump());
    }
  }
  for (const auto& [id, _] : theirs)
    if (!seen.count(id)) differ("record " + id + " is on the server only");
  const auto live =
      std::count_if(mine.begin(), mine.end(), [](const RecordView& r) { return !r.deleted; });
  std::cout << "    " << d.label << ": device " << live << " record(s), server " << theirs.size()
            << " for its scope: " << (differences == 0 ? "equal" : "DIFFERENT") << "\n";
  return differences;
}

// Syncs every device until one full pass moves nothing. False if it never settles.
bool sync_until_quiet(std::vector<Device*>& devices, int max_passes) {
  for (int pass = 1; pass <= max_passes; ++pass) {
    bool quiet = true;
    for (Device* d : devices) {
      SyncOptions so;
      so.user_agent = "fieldsync-demo/0.1";
      const SyncProgress p =
          must(fieldsync::sync(*d->store, *d->transport, so), "sync of " + d->label);
      if (p.sent != 0 || p.received != 0) quiet = false;
    }
    std::cout << "  pass " << pass << ": " << (quiet ? "nothing left to exchange" : "changes moved")
              << "\n";
    if (quiet) return true;
  }
  return false;
}

// Prints the open conflicts (from the admin API when there is an admin) and the
// review mark on the second editor's phone. False when that mark is missing.
bool print_conflicts(Device* admin, Device& second, const std::string& record_id,
                     const std::map<std::string, std::string>& village_of) {
  bool shown = false;
  if (admin != nullptr) {
    Api api(*admin->transport);
    auto open = api.get("/v1/conflicts?status=open", admin->token);
    if (open) {
      const json& list = open->at("conflicts");
      std::cout << "  the server has " << list.size()
                << " open conflict(s) for an administrator:\n";
      for (const auto& c : list) {
        const std::string rec = c.value("record", "");
        const auto v = village_of.find(rec);
        std::cout << "    #" << c.value("id", 0) << " " << c.value("kind", "") << " on "
                  << (v == village_of.end() ? rec : v->second) << " field " << c.value("field", "")
                  << "\n";
        if (c.contains("server") && c["server"].is_object())
          std::cout << "      server keeps " << c["server"].value("value", json()).dump() << " (by "
                    << c["server"].value("author", "?") << ")\n";
        if (c.contains("candidates"))
          for (const auto& cand : c["candidates"])
            std::cout << "      candidate   " << cand.value("value", json()).dump() << " (by "
                      << cand.value("author", "?") << ")\n";
      }
      shown = true;
    } else {
      std::cout << "  (the conflict list is not available: " << open.error().to_string() << ")\n";
    }
  }
  const auto view = must(second.store->get(record_id), "read the contested record");
  const auto f = view.fields.find(kContested);
  if (f != view.fields.end() && f->second.under_review) {
    std::cout << "  on " << second.label << "'s phone " << kContested
              << " is marked for review: shows " << f->second.value.dump()
              << " (the server's), kept " << (f->second.my_value ? f->second.my_value->dump() : "?")
              << " (its own)\n";
    return true;
  }
  std::cout << "  no review mark on " << second.label << "'s phone" << (shown ? "" : " either")
            << "\n";
  return false;
}

int run(const Options& o) {
  namespace fs = std::filesystem;
  const auto users = must(read_users(o.users_file), "read the users");
  fs::create_directories(o.dir);

  // One officer per kecamatan drives that kecamatan's phone; a second user edits
  // the contested village: another officer of that kecamatan, else the admin.
  std::map<std::string, std::vector<const DemoUser*>> officers;
  const DemoUser* admin_user = nullptr;
  for (const auto& u : users) {
    if (u.role == "admin" && admin_user == nullptr) admin_user = &u;
    if (u.role == "officer" && !u.scopes.empty()) officers[u.scopes.front()].push_back(&u);
  }
  if (officers.empty()) {
    std::cerr << "fieldsync-demo: " << o.users_file << " has no officer with a scope\n";
    return 2;
  }

  std::cout << "== fieldsync field day against " << o.server << "\n";
  {
    auto t = must(make_http_transport(HttpTransportOptions{o.server, o.ca_file}), "server URL");
    must(Api(*t).get("/healthz", {}), "the server is not healthy");
  }

  std::cout << "\n1. Phones log in (with signal at the district office) and get the forms\n";
  std::vector<std::unique_ptr<Device>> owned;
  for (const auto& [kec, list] : officers) {
    auto d = std::make_unique<Device>();
    d->kecamatan = kec;
    d->user = *list.front();
    d->label = kec + " " + d->user.username;
    open_device(*d, o);
    owned.push_back(std::move(d));
  }
  Device& first = *owned.front();
  std::unique_ptr<Device> second_owned;
  {
    const auto& same_kec = officers.at(first.kecamatan);
    const DemoUser* second_user = same_kec.size() > 1 ? same_kec[1] : admin_user;
    if (second_user == nullptr) {
      std::cerr << "fieldsync-demo: need a second officer in " << first.kecamatan
                << " or an admin\n";
      return 2;
    }
    second_owned = std::make_unique<Device>();
    second_owned->kecamatan = first.kecamatan;
    second_owned->user = *second_user;
    second_owned->label = second_user->role == "admin"
                              ? second_user->username + " (whole regency)"
                              : first.kecamatan + " " + second_user->username;
    open_device(*second_owned, o);
  }
  Device& second = *second_owned;
  Device* admin_device = second.user.role == "admin" ? &second : nullptr;
  std::unique_ptr<Device> admin_owned;
  if (admin_device == nullptr && admin_user != nullptr) {
    admin_owned = std::make_unique<Device>();
    admin_owned->kecamatan = "admin";
    admin_owned->user = *admin_user;
    admin_owned->label = "admin " + admin_user->username;
    admin_owned->transport =
        must(make_http_transport(HttpTransportOptions{o.server, o.ca_file}), "server URL");
    StoreOptions so;
    so.path = o.dir + "/admin-console.db";
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(so.path + suffix);
    admin_owned->store = must(Store::open(so), "open the admin console store");
    admin_owned->token =
        must(fieldsync::login(*admin_owned->store, *admin_owned->transport, admin_user->username,
                              admin_user->password, kTimeout),
             "log in as " + admin_user->username)
            .token;
    admin_device = admin_owned.get();
  }

  std::cout << "\n2. Offline in the villages: each officer fills a KLA survey per village\n";
  std::map<std::string, std::string> village_of;  // record id -> village code
  std::string contested_record;
  for (auto& d : owned) {
    for (int n = 1; n <= o.villages; ++n) {
      const std::string code = village_code(d->kecamatan, n);
      PutRequest put;
      put.form = kForm;
      put.scope = code;
      put.fields = survey_answers(code);
      const std::string id = must(d->store->put(put), "save the survey of " + code);
      village_of[id] = code;
      if (d.get() == &first && n == 1) contested_record = id;
    }
    const auto status = must(d->store->status(), "store status");
    std::cout << "  " << d->label << ": " << o.villages << " village(s) surveyed, "
              << status.pending << " change(s) waiting in the outbox\n";
  }

  std::cout << "\n3. Back in signal: every phone syncs\n";
  for (auto& d : owned) run_sync(*d);
  run_sync(second);

  const std::string code = village_of.at(contested_record);
  const auto before = must(first.store->get(contested_record), "read " + code);
  const std::int64_t base = before.fields.at(kContested).value.get<std::int64_t>();
  const std::int64_t first_value = base + 7;
  const std::int64_t second_value = base - 5;
  std::cout << "\n4. Both offline again, two editors correct " << code << " (" << kContested
            << " = " << base << "):\n"
            << "  " << first.label << " sets it to " << first_value << "\n"
            << "  " << second.label << " sets it to " << second_value
            << " and also ticks has_child_info_facility\n";
  {
    PutRequest put;
    put.record = contested_record;
    put.fields = {{kContested, first_value}};
    must(first.store->put(put), "edit on " + first.label);
    put.fields = {{kContested, second_value}, {"has_child_info_facility", true}};
    must(second.store->put(put), "edit on " + second.label);
  }

  std::cout << "\n5. Both sync: the first to arrive wins, the other value goes to review\n";
  run_sync(first);
  run_sync(second);

  std::cout << "\n6. Everyone syncs until nothing is left\n";
  std::vector<Device*> all;
  for (auto& d : owned) all.push_back(d.get());
  all.push_back(&second);
  if (!sync_until_quiet(all, 6)) {
    std::cout << "FAILED: the devices never stopped exchanging changes\n";
    return 1;
  }

  std::cout << "\n7. What converged (each phone against the server, for its scope)\n";
  int differences = 0;
  for (Device* d : all) differences += compare(*d);

  std::cout << "\n8. The open conflict\n";
  const bool marked = print_conflicts(admin_device, second, contested_record, village_of);
  {
    const auto on_first = must(first.store->get(contested_record), "read the contested record");
    const auto on_second = must(second.store->get(contested_record), "read the contested record");
    const auto merged = on_second.fields.find("has_child_info_facility");
    std::cout << "  field-level merge: has_child_info_facility = "
              << (merged == on_second.fields.end() ? "null" : merged->second.value.dump()) << " on "
              << second.label << ", "
              << (on_first.fields.count("has_child_info_facility")
                      ? on_first.fields.at("has_child_info_facility").value.dump()
                      : "null")
              << " on " << first.label << "\n";
  }

  if (differences != 0) {
    std::cout << "\nFAILED: " << differences << " difference(s) between devices and the server\n";
    return 1;
  }
  if (!marked) {
    std::cout << "\nFAILED: the concurrent edit of " << code << " did not go to review\n";
    return 1;
  }
  std::cout << "\nAll " << all.size()
            << " phones hold exactly the server's data for their scopes.\n"
            << "To run the server alone: fieldsync-server serve --db <server.db> --listen "
               "127.0.0.1:8080\n";
  return 0;
}

}  // namespace
}  // namespace fieldsync

int main(int argc, char** argv) {
  fieldsync::Options o;
  CLI::App app{"fieldsync field-day demo: one device per kecamatan syncing with a running server"};
  app.add_option("--server", o.server, "server base URL, e.g. http://127.0.0.1:8080")->required();
  app.add_option("--users", o.users_file,
                 "users file written by `fieldsync-server init --demo` (JSON lines)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--dir", o.dir, "directory for the device stores (re-created each run)")
      ->required();
  app.add_option("--ca", o.ca_file, "PEM file of trusted CAs for an https:// server");
  app.add_option("--villages", o.villages, "villages each officer surveys")
      ->check(CLI::Range(1, 99));
  CLI11_PARSE(app, argc, argv);
  return fieldsync::run(o);
}
