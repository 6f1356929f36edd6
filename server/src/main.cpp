// fieldsync-server: the command line. `serve` runs the HTTP server; `user`, `form`
// and `init` administer a store file. Every subcommand takes --db PATH.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <mutex>
#include <sstream>

#include "auth.hpp"
#include "demo_setup.hpp"
#include "fieldsync/hlc.hpp"
#include "form_catalog.hpp"
#include "listener.hpp"
#include "metrics.hpp"
#include "router.hpp"
#include "sqlite_store.hpp"
#include "writer.hpp"

namespace fs = fieldsync::server;
using fieldsync::Error;
using fieldsync::json;
using fieldsync::Result;

namespace {

int fail(const std::string& message) {
  std::cerr << "fieldsync-server: " << message << "\n";
  return 1;
}

int fail(const Error& e) {
  return fail(e.to_string());
}

Result<std::unique_ptr<fs::ServerStore>> open_store(const std::string& path, bool create) {
  fs::SqliteStoreOptions options;
  options.path = path;
  options.create = create;
  return fs::open_sqlite_store(options);
}

// "HOST:PORT" or "[V6]:PORT".
bool split_listen(const std::string& text, std::string& host, std::uint16_t& port) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const std::string p = text.substr(colon + 1);
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos)
    return false;
  unsigned long v = std::stoul(p);
  if (v > 65535) return false;
  port = static_cast<std::uint16_t>(v);
  return !host.empty();
}

bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

int serve(const std::string& db, const std::string& listen, const fs::ServerLimits& limits,
          std::int64_t token_ttl_s, bool quiet, const std::string& tls_cert,
          const std::string& tls_key, std::int64_t clock_skew_minutes) {
  std::string host;
  std::uint16_t port = 0;
  if (!split_listen(listen, host, port))
    return fail("--listen takes HOST:PORT, e.g. 127.0.0.1:8080");
  auto store = open_store(db, false);
  if (!store) return fail(store.error());
  fs::Writer writer(**store);
  fs::Metrics metrics;
  fs::RouterOptions options;
  options.limits = limits;
  options.auth.token_ttl_ms = token_ttl_s * 1000;
  options.clock_skew_ms = clock_skew_minutes * 60 * 1000;
  std::mutex log_mutex;
  if (!quiet) {
    options.log = [&log_mutex](const std::string& line) {
      std::string stamped =
          fieldsync::format_rfc3339_ms(fieldsync::system_now_ms()) + " " + line + "\n";
      std::lock_guard lock(log_mutex);
      std::fputs(stamped.c_str(), stderr);
    };
  }
  fs::Router router(**store, writer, metrics, options);
  fs::HttpServer server(router, limits);
  if (!tls_cert.empty() || !tls_key.empty()) {
    if (tls_cert.empty() || tls_key.empty()) return fail("--tls-cert and --tls-key go together");
    if (auto ok = server.use_tls(tls_cert, tls_key); !ok) return fail(ok.error());
  }
  auto bound = server.listen(host, port);
  if (!bound) return fail(bound.error());
  std::printf("listening on %s\n", bound->c_str());
  std::fflush(stdout);
  server.run(true);
  writer.stop();
  std::fprintf(stderr, "fieldsync-server: stopped\n");
  return 0;
}

int user_add(const std::string& db, const std::string& name, const std::string& role,
             const std::vector<std::string>& scopes, bool password_stdin) {
  std::string password;
  bool generated = false;
  if (password_stdin) {
    if (!std::getline(std::cin, password)) return fail("no password on standard input");
    if (!password.empty() && password.back() == '\r') password.pop_back();
  } else {
    password = fs::generate_password();
    generated = true;
  }
  auto store = open_store(db, false);
  if (!store) return fail(store.error());
  fs::Writer writer(**store);
  auto existed = (*store)->user(name);
  if (!existed) return fail(existed.error());
  if (auto r = fs::put_user(writer, fs::UserSpec{name, role, scopes, password},
                            fieldsync::system_now_ms());
      !r)
    return fail(r.error());
  std::cerr << (*existed ? "updated" : "created") << " user " << name << " (" << role << ")\n";
  if (generated) std::cout << json{{"username", name}, {"password", password}}.dump() << "\n";
  return 0;
}

int user_revoke(const std::string& db, const std::string& name) {
  auto store = open_store(db, false);
  if (!store) return fail(store.error());
  fs::Writer writer(**store);
  auto n = fs::revoke_user(writer, name);
  if (!n) return fail(n.error());
  std::cerr << "disabled user " << name << " and revoked " << *n << " token(s)\n";
  return 0;
}

int form_publish(const std::string& db, const std::string& file) {
  std::string text;
  if (!read_file(file, text)) return fail("cannot read " + file);
  json definition = json::parse(text, nullptr, false);
  if (definition.is_discarded()) return fail(file + " is not valid JSON");
  auto store = open_store(db, false);
  if (!store) return fail(store.error());
  fs::Writer writer(**store);
  auto published = fs::publish_form(writer, definition, "", "cli", fieldsync::system_now_ms());
  if (!published) return fail(published.error());
  std::cout << json{{"id", published->id},
                    {"version", published->version},
                    {"created", published->created}}
                   .dump()
            << "\n";
  return 0;
}

int init(const std::string& db, bool demo, const std::string& forms_dir) {
  auto store = open_store(db, true);
  if (!store) return fail(store.error());
  if (!demo) {
    std::cerr << "initialised " << db << "\n";
    return 0;
  }
  std::string form(fs::embedded_kla_desa()), regions(fs::embedded_bengkalis_regions());
  if (!forms_dir.empty()) {
    if (!read_file(forms_dir + "/kla-desa.json", form))
      return fail("cannot read " + forms_dir + "/kla-desa.json");
    if (!read_file(forms_dir + "/bengkalis-regions.json", regions))
      return fail("cannot read " + forms_dir + "/bengkalis-regions.json");
  }
  fs::Writer writer(**store);
  auto setup = fs::init_demo(**store, writer, form, regions, fieldsync::system_now_ms());
  if (!setup) return fail(setup.error());
  std::cerr
      << "published form " << setup->form_id << " version " << setup->form_version << "\n"
      << "users (passwords are shown once; the same list is on standard output as JSON lines):\n";
  for (const auto& u : setup->users) {
    std::cerr << "  " << u.username << "  " << u.password << "  " << u.role;
    for (const auto& s : u.scopes) std::cerr << " " << s;
    std::cerr << "  (" << u.area << ")\n";
    std::cout << json{{"username", u.username},
                      {"password", u.password},
                      {"role", u.role},
                      {"scopes", u.scopes},
                      {"area", u.area}}
                     .dump()
              << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fieldsync-server: the regency server of fieldsync (protocol v1)."};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("fieldsync-server 0.1.0, protocol ") +
                                        std::to_string(fieldsync::kProtocolVersion));

  std::string db;
  auto add_db = [&db](CLI::App* cmd) {
    cmd->add_option("--db", db, "the server's SQLite file")->required();
  };

  fs::ServerLimits limits;
  std::string listen = "127.0.0.1:8080";
  std::int64_t token_days = 30;
  bool quiet = false;
  auto* serve_cmd =
      app.add_subcommand("serve", "run the HTTP server (stop with SIGINT or SIGTERM)");
  add_db(serve_cmd);
  serve_cmd->add_option("--listen", listen, "HOST:PORT to listen on; port 0 picks a free one")
      ->capture_default_str();
  serve_cmd->add_option("--workers", limits.workers, "threads that run requests")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  serve_cmd
      ->add_option("--max-connections", limits.max_connections, "connections beyond are closed")
      ->capture_default_str();
  serve_cmd->add_option("--body-limit", limits.body_limit, "largest request body in bytes")
      ->capture_default_str();
  serve_cmd
      ->add_option("--body-memory", limits.body_memory,
                   "request body bytes held at once over all connections; a request beyond "
                   "gets 429 with Retry-After")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::numeric_limits<std::size_t>::max()));
  std::int64_t header_timeout_s = limits.header_timeout.count();
  std::int64_t body_timeout_s = limits.body_timeout.count();
  serve_cmd
      ->add_option("--header-timeout", header_timeout_s,
                   "seconds to receive a request's header (also the keep-alive idle time); a "
                   "slower client is disconnected")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  serve_cmd
      ->add_option("--body-timeout", body_timeout_s,
                   "seconds without progress while receiving a body before the client is "
                   "disconnected")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  serve_cmd->add_option("--batch-limit", limits.batch_limit, "most changes in one sync request")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  auto* token_days_opt =
      serve_cmd->add_option("--token-days", token_days, "days a login token stays valid")
          ->capture_default_str()
          ->check(CLI::Range(1, 3650));
  std::int64_t token_seconds = 0;
  serve_cmd
      ->add_option("--token-seconds", token_seconds,
                   "seconds a login token stays valid, instead of --token-days (short sessions, "
                   "tests)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{3650} * 24 * 3600))
      ->excludes(token_days_opt);
  serve_cmd->add_flag("--quiet", quiet, "no per-request log lines on stderr");
  std::int64_t clock_skew_minutes = 10;
  serve_cmd
      ->add_option("--clock-skew-minutes", clock_skew_minutes,
                   "flag devices whose clock runs ahead of the server by more")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  std::string tls_cert, tls_key;
  serve_cmd->add_option("--tls-cert", tls_cert,
                        "serve HTTPS with this PEM certificate chain (needs --tls-key)");
  serve_cmd->add_option("--tls-key", tls_key, "the PEM private key of --tls-cert");

  auto* user_cmd = app.add_subcommand("user", "manage users");
  user_cmd->require_subcommand(1);
  std::string user_name, role;
  std::vector<std::string> scopes;
  bool password_stdin = false;
  auto* user_add_cmd = user_cmd->add_subcommand(
      "add",
      "create a user, or replace an existing user's role, scopes and password (and enable it)");
  add_db(user_add_cmd);
  user_add_cmd->add_option("name", user_name, "user name: a-z 0-9 . _ -")->required();
  user_add_cmd->add_option("--role", role, "officer or admin")
      ->required()
      ->check(CLI::IsMember({"officer", "admin"}));
  user_add_cmd->add_option("--scope", scopes,
                           "region code the user may read and write (repeatable)");
  user_add_cmd->add_flag(
      "--password-stdin", password_stdin,
      "read the password from the first line of standard input (else one is generated "
      "and printed)");
  auto* user_revoke_cmd = user_cmd->add_subcommand(
      "revoke", "disable a user and revoke all its tokens (user add enables it again)");
  add_db(user_revoke_cmd);
  user_revoke_cmd->add_option("name", user_name, "user name")->required();

  auto* form_cmd = app.add_subcommand("form", "manage forms");
  form_cmd->require_subcommand(1);
  std::string form_file;
  auto* form_publish_cmd = form_cmd->add_subcommand(
      "publish", "publish a form definition as its next version (same as PUT /v1/forms/{id})");
  add_db(form_publish_cmd);
  form_publish_cmd->add_option("file", form_file, "the form definition (JSON)")->required();

  bool demo = false;
  std::string forms_dir;
  auto* init_cmd =
      app.add_subcommand("init", "create the store file (and with --demo, the demo regency)");
  add_db(init_cmd);
  init_cmd->add_flag(
      "--demo", demo,
      "publish the KLA village form and create an admin and one officer per Bengkalis kecamatan; "
      "prints the generated passwords once (JSON lines on stdout)");
  init_cmd->add_option(
      "--forms-dir", forms_dir,
      "read kla-desa.json and bengkalis-regions.json from this folder instead of the copies "
      "built into the binary");

  CLI11_PARSE(app, argc, argv);

  try {
    if (*serve_cmd) {
      limits.header_timeout = std::chrono::seconds(header_timeout_s);
      limits.body_timeout = std::chrono::seconds(body_timeout_s);
      return serve(db, listen, limits, token_seconds > 0 ? token_seconds : token_days * 24 * 3600,
                   quiet, tls_cert, tls_key, clock_skew_minutes);
    }
    if (*user_add_cmd) return user_add(db, user_name, role, scopes, password_stdin);
    if (*user_revoke_cmd) return user_revoke(db, user_name);
    if (*form_publish_cmd) return form_publish(db, form_file);
    if (*init_cmd) return init(db, demo, forms_dir);
  } catch (const std::exception& e) {
    return fail(std::string("unexpected failure: ") + e.what());
  }
  return 1;
}
