// fieldsync-admin: the administrators' command line over the HTTP API of
// docs/protocol.md - conflict review (list, show, resolve, bulk), record history,
// device health, revoking and reinstating users and devices, the KLA report and
// CSV export. The login token is kept in a
// small file (mode 0600) so later commands need no password.
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "fieldsync/http_transport.hpp"

namespace {

using json = nlohmann::json;
using fieldsync::HttpRequest;
using fieldsync::HttpResponse;

// A failure reported to the user with exit status 1.
struct Failure {
  std::string message;
};

constexpr auto kTimeout = std::chrono::seconds(60);

std::string default_token_file() {
  std::filesystem::path base;
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x)
    base = x;
  else if (const char* h = std::getenv("HOME"); h && *h)
    base = std::filesystem::path(h) / ".config";
  else
    base = ".";
  return (base / "fieldsync" / "admin-token.json").string();
}

// Reads one line; when stdin is a terminal, asks for it without echoing.
std::string read_password() {
  const bool tty = ::isatty(STDIN_FILENO) != 0;
  termios old{};
  if (tty) {
    std::cerr << "password: " << std::flush;
    ::tcgetattr(STDIN_FILENO, &old);
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  }
  std::string password;
  std::getline(std::cin, password);
  if (tty) {
    ::tcsetattr(STDIN_FILENO, TCSANOW, &old);
    std::cerr << "\n";
  }
  if (!password.empty() && password.back() == '\r') password.pop_back();
  return password;
}

// Percent-encodes a query value.
std::string encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string query(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string out;
  for (const auto& [k, v] : params) {
    if (v.empty()) continue;
    out += (out.empty() ? "?" : "&") + k + "=" + encode(v);
  }
  return out;
}

class Session {
 public:
  Session(std::string server, std::string ca_file, std::string token_file)
      : server_(std::move(server)), token_file_(std::move(token_file)) {
    fieldsync::HttpTransportOptions o;
    o.base_url = server_;
    o.ca_file = std::move(ca_file);
    auto t = fieldsync::make_http_transport(o);
    if (!t) throw Failure{t.error().message};
    transport_ = std::move(t).value();
  }

  void login(const std::string& user, const std::string& password) {
    json body = {{"username", user}, {"password", password}, {"device_id", "fieldsync-admin"}};
    json answer = call("POST", "/v1/login", body.dump(), false);
    token_ = answer.at("token").get<std::string>();
    std::filesystem::path p(token_file_);
    if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
    {
      std::ofstream out(token_file_, std::ios::trunc);
      if (!out) throw Failure{"cannot write " + token_file_};
      out << json{{"server", server_}, {"user", user}, {"token", token_}}.dump() << "\n";
    }
    ::chmod(token_file_.c_str(), S_IRUSR | S_IWUSR);
    std::cerr << "logged in as " << user << " (" << answer.at("user").value("role", "") << ")\n";
  }

  // The answer's body text; throws Failure for a non-2xx answer.
  std::string raw(const std::string& method, const std::string& target,
                  const std::string& body = {}, bool with_token = true) {
    HttpRequest req;
    req.method = method;
    req.target = target;
    req.body = body;
    if (!body.empty()) req.headers.emplace_back("Content-Type", "application/json");
    req.headers.emplace_back("User-Agent", "fieldsync-admin/0.1");
    if (with_token) req.headers.emplace_back("Authorization", "Bearer " + token());
    auto res = transport_->send(req, kTimeout);
    if (!res) throw Failure{res.error().message};
    if (res->status < 200 || res->status >= 300) {
      std::string message = "HTTP " + std::to_string(res->status);
      try {
        const json e = json::parse(res->body).at("error");
        message += " " + e.value("code", "") + ": " + e.value("message", "");
        if (e.contains("field")) message += " (field " + e["field"].get<std::string>() + ")";
      } catch (const json::exception&) {
      }
      if (res->status == 401) message += "; log in again with --user";
      throw Failure{message};
    }
    return res->body;
  }

  json call(const std::string& method, const std::string& target, const std::string& body = {},
            bool with_token = true) {
    return json::parse(raw(method, target, body, with_token));
  }

 private:
  const std::string& token() {
    if (!token_.empty()) return token_;
    std::ifstream in(token_file_);
    json saved;
    if (in) {
      try {
        in >> saved;
      } catch (const json::exception&) {
      }
    }
    if (!saved.is_object() || saved.value("server", "") != server_ || !saved.contains("token"))
      throw Failure{"not logged in to " + server_ + " (add --user NAME)"};
    token_ = saved["token"].get<std::string>();
    return token_;
  }

  std::string server_;
  std::string token_file_;
  std::string token_;
  std::unique_ptr<fieldsync::Transport> transport_;
};

void print(const json& j) {
  std::cout << j.dump(2) << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "fieldsync-admin: conflict review, history, devices, revocation, reports and export"};
  app.require_subcommand(1);
  std::string server, user, ca_file, token_file = default_token_file();
  app.add_option("--server", server, "Server URL, e.g. https://kla.bengkaliskab.go.id")->required();
  app.add_option("--user", user, "Log in as this admin first (password from stdin or a prompt)");
  app.add_option("--ca-file", ca_file, "PEM file of trusted CAs (HTTPS)");
  app.add_option("--token-file", token_file, "Where the login token is kept")
      ->capture_default_str();

  std::function<void(Session&)> action;

  app.add_subcommand("login", "Log in (with --user) and keep the token")->callback([&] {
    action = [](Session&) {};
  });

  auto* conflicts = app.add_subcommand("conflicts", "Conflict review");
  conflicts->require_subcommand(1);

  struct ListArgs {
    std::string status = "open", kind, form, scope, record;
  } la;
  auto* list = conflicts->add_subcommand("list", "Conflicts as JSON lines, all pages");
  list->add_option("--status", la.status, "open, resolved or all")->capture_default_str();
  list->add_option("--kind", la.kind, "field, delete or duplicate_record");
  list->add_option("--form", la.form);
  list->add_option("--scope", la.scope);
  list->add_option("--record", la.record);
  list->callback([&] {
    action = [&](Session& s) {
      std::int64_t after = 0;
      for (;;) {
        json page =
            s.call("GET", "/v1/conflicts" + query({{"status", la.status == "all" ? "" : la.status},
                                                   {"kind", la.kind},
                                                   {"form", la.form},
                                                   {"scope", la.scope},
                                                   {"record", la.record},
                                                   {"after", std::to_string(after)},
                                                   {"limit", "500"}}));
        for (const auto& c : page.at("conflicts")) {
          std::cout << c.dump() << "\n";
          after = c.at("id").get<std::int64_t>();
        }
        if (!page.value("more", false) || page.at("conflicts").empty()) break;
      }
    };
  });

  std::string conflict_id;
  auto* show = conflicts->add_subcommand("show", "One conflict with every candidate");
  show->add_option("ID", conflict_id)->required();
  show->callback([&] {
    action = [&](Session& s) { print(s.call("GET", "/v1/conflicts/" + encode(conflict_id))); };
  });

  struct ResolveArgs {
    std::string keep, value, merge_into, note;
    int candidate = -1;
  } ra;
  auto* resolve = conflicts->add_subcommand(
      "resolve",
      "Resolve one conflict: --keep server|candidate|deleted|record|both, --value JSON, "
      "or --merge-into RECORD");
  resolve->add_option("ID", conflict_id)->required();
  resolve->add_option("--keep", ra.keep);
  resolve->add_option("--candidate", ra.candidate, "0-based candidate index");
  resolve->add_option("--value", ra.value, "The value to set, as JSON (e.g. 42 or '\"text\"')");
  resolve->add_option("--merge-into", ra.merge_into, "Duplicates: the record to keep");
  resolve->add_option("--note", ra.note);
  resolve->callback([&] {
    action = [&](Session& s) {
      json body = json::object();
      if (!ra.keep.empty()) body["keep"] = ra.keep;
      if (ra.candidate >= 0) body["candidate"] = static_cast<unsigned>(ra.candidate);
      if (!ra.value.empty()) {
        try {
          body["value"] = json::parse(ra.value);
        } catch (const json::exception&) {
          throw Failure{"--value must be JSON, e.g. 42, true or '\"text\"'"};
        }
      }
      if (!ra.merge_into.empty()) body["merge_into"] = ra.merge_into;
      if (!ra.note.empty()) body["note"] = ra.note;
      print(s.call("POST", "/v1/conflicts/" + encode(conflict_id) + "/resolve", body.dump()));
    };
  });

  struct BulkArgs {
    std::string rule, user, form, scope, field, kind, note;
    bool dry_run = false;
  } ba;
  auto* bulk = conflicts->add_subcommand("bulk", "Resolve every open conflict matching a filter");
  bulk->add_option("--rule", ba.rule, "server, latest_received or candidate_from_user")->required();
  bulk->add_option("--from-user", ba.user, "For candidate_from_user: whose candidate wins");
  bulk->add_option("--form", ba.form);
  bulk->add_option("--scope", ba.scope);
  bulk->add_option("--field", ba.field);
  bulk->add_option("--kind", ba.kind);
  bulk->add_option("--note", ba.note);
  bulk->add_flag("--dry-run", ba.dry_run, "Only say what would be done");
  bulk->callback([&] {
    action = [&](Session& s) {
      json filter = json::object();
      if (!ba.form.empty()) filter["form"] = ba.form;
      if (!ba.scope.empty()) filter["scope"] = ba.scope;
      if (!ba.field.empty()) filter["field"] = ba.field;
      if (!ba.kind.empty()) filter["kind"] = ba.kind;
      json body = {{"filter", filter}, {"rule", ba.rule}, {"dry_run", ba.dry_run}};
      if (!ba.user.empty()) body["user"] = ba.user;
      if (!ba.note.empty()) body["note"] = ba.note;
      print(s.call("POST", "/v1/conflicts/resolve-bulk", body.dump()));
    };
  });

  std::string record;
  auto* history = app.add_subcommand("history", "Every entry, conflict and rejection of a record");
  history->add_option("RECORD", record)->required();
  history->callback([&] {
    action = [&](Session& s) {
      print(s.call("GET", "/v1/records/" + encode(record) + "/history"));
    };
  });

  // `<parent> <verb> ARG`: POST <prefix><ARG>/<verb> and print the answer.
  auto add_post = [&action](CLI::App* parent, const std::string& verb, const std::string& help,
                            const std::string& arg, std::string& value, const std::string& prefix) {
    auto* sub = parent->add_subcommand(verb, help);
    sub->add_option(arg, value)->required();
    sub->callback([&action, &value, verb, prefix] {
      action = [&value, verb, prefix](Session& s) {
        print(s.call("POST", prefix + encode(value) + "/" + verb));
      };
    });
  };

  // `devices` alone lists; `devices revoke|reinstate ID` act on one device.
  auto* devices = app.add_subcommand(
      "devices", "Sync health and revocation state of every device (or revoke/reinstate one)");
  std::string device_id;
  add_post(devices, "revoke",
           "Revoke a device: its tokens end, its logins and syncs are refused until reinstated",
           "DEVICE_ID", device_id, "/v1/devices/");
  add_post(devices, "reinstate",
           "Lift a device's revocation (it logs in again; old tokens stay ended)", "DEVICE_ID",
           device_id, "/v1/devices/");
  devices->callback([&] {
    if (action) return;  // a subcommand chose it
    action = [](Session& s) {
      const json answer = s.call("GET", "/v1/devices");
      std::set<std::string> listed;
      for (const auto& d : answer.at("devices")) {
        std::cout << d.dump() << "\n";
        listed.insert(d.value("device_id", ""));
      }
      // Revoked devices that never synced (only logged in) get a line too.
      for (const auto& r : answer.value("revoked_devices", json::array()))
        if (!listed.count(r.value("device_id", ""))) {
          json line = r;
          line["revoked"] = true;
          std::cout << line.dump() << "\n";
        }
    };
  });

  auto* users = app.add_subcommand("user", "Revoke or reinstate a user");
  users->require_subcommand(1);
  std::string user_name;
  add_post(users, "revoke", "Disable a user and end all its tokens at once (until reinstated)",
           "NAME", user_name, "/v1/users/");
  add_post(users, "reinstate",
           "Enable a revoked user again (it logs in anew; old tokens stay ended)", "NAME",
           user_name, "/v1/users/");

  struct ReportArgs {
    std::string scope, form;
    bool csv = false;
  } rep;
  auto* report = app.add_subcommand("report", "Reports");
  report->require_subcommand(1);
  auto* kla = report->add_subcommand("kla", "The KLA indicators per kecamatan and regency");
  kla->add_option("--scope", rep.scope);
  kla->add_option("--form", rep.form);
  kla->add_flag("--csv", rep.csv, "CSV for spreadsheets instead of JSON");
  kla->callback([&] {
    action = [&](Session& s) {
      const std::string target =
          "/v1/reports/kla" +
          query({{"scope", rep.scope}, {"form", rep.form}, {"format", rep.csv ? "csv" : ""}});
      if (rep.csv)
        std::cout << s.raw("GET", target);
      else
        print(s.call("GET", target));
    };
  });

  std::string export_form, export_scope;
  auto* exp = app.add_subcommand("export", "All current records of a form as CSV");
  exp->add_option("FORM", export_form)->required();
  exp->add_option("--scope", export_scope);
  exp->callback([&] {
    action = [&](Session& s) {
      std::cout << s.raw(
          "GET", "/v1/export" +
                     query({{"form", export_form}, {"scope", export_scope}, {"format", "csv"}}));
    };
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    Session session(server, ca_file, token_file);
    if (!user.empty()) session.login(user, read_password());
    if (action) action(session);
    std::cout << std::flush;
  } catch (const Failure& f) {
    std::cerr << "fieldsync-admin: " << f.message << "\n";
    return 1;
  } catch (const json::exception& e) {
    std::cerr << "fieldsync-admin: unexpected answer: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
