// fieldsync-cli's sync commands over the Boost.Beast transport: `login` (password
// from stdin) and `sync` (a progress line per round trip on stderr, a summary on
// stdout). Compiled in only when fieldsync::http is built.
#include <termios.h>
#include <unistd.h>

#include <iostream>

#include "cli.hpp"
#include "fieldsync/http_transport.hpp"
#include "fieldsync/sync.hpp"

namespace fieldsync::cli {
namespace {

// Reads one line; when stdin is a terminal, asks for it without echoing.
std::string read_password() {
  bool tty = ::isatty(STDIN_FILENO) != 0;
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

std::unique_ptr<Transport> transport_for(const std::string& url, const std::string& ca_file) {
  HttpTransportOptions o;
  o.base_url = url;
  o.ca_file = ca_file;
  return must(make_http_transport(o));
}

struct SyncArgs {
  std::string server;
  std::string user;
  std::string ca_file;
  std::int64_t batch = 500;
};

}  // namespace

void register_sync_commands(CLI::App& app, Context& ctx) {
  auto args = std::make_shared<SyncArgs>();

  auto* login_cmd = app.add_subcommand("login", "Log in to a server (password read from stdin)");
  login_cmd->add_option("--server", args->server, "Server URL, e.g. https://kla.bengkaliskab.go.id")
      ->required();
  login_cmd->add_option("--user", args->user, "User name")->required();
  login_cmd->add_option("--ca-file", args->ca_file, "PEM file of trusted CAs (HTTPS)");
  login_cmd->callback([&ctx, args] {
    ctx.actions.push_back([&ctx, args] {
      Store& store = ctx.store();
      auto transport = transport_for(args->server, args->ca_file);
      std::string password = read_password();
      auto l = must(login(store, *transport, args->user, password));
      must(store.set_setting("server_url", args->server));
      if (!args->ca_file.empty()) must(store.set_setting("ca_file", args->ca_file));
      std::cout << json{{"user", l.user.username},
                        {"role", l.user.role},
                        {"scopes", l.user.scopes},
                        {"expires_at", l.expires_at}}
                       .dump(2)
                << "\n";
    });
  });

  auto* sync_cmd = app.add_subcommand("sync", "Send the outbox and pull changes until done");
  sync_cmd->add_option("--batch", args->batch, "Changes per round trip")
      ->check(CLI::Range(1, 1000));
  sync_cmd->callback([&ctx, args] {
    ctx.actions.push_back([&ctx, args] {
      Store& store = ctx.store();
      auto url = must(store.setting("server_url"));
      if (!url)
        throw UserError("not logged in (run: fieldsync-cli --db ... login --server URL --user U)");
      auto ca = must(store.setting("ca_file"));
      auto transport = transport_for(*url, ca.value_or(""));
      SyncOptions o;
      o.batch_size = args->batch;
      o.on_progress = [](const SyncProgress& p) {
        std::cerr << "sync: round " << p.round_trips << ", sent " << p.sent << " (applied "
                  << p.applied << ", conflicts " << p.conflicts << ", rejected " << p.rejected
                  << "), received " << p.received << ", cursor " << p.cursor << "\n";
      };
      auto p = must(sync(store, *transport, o));
      auto st = must(store.status());
      std::cout << json{{"round_trips", p.round_trips}, {"sent", p.sent},
                        {"applied", p.applied},         {"conflicts", p.conflicts},
                        {"rejected", p.rejected},       {"received", p.received},
                        {"retries", p.retries},         {"cursor", p.cursor},
                        {"pending", st.pending},        {"under_review", st.under_review}}
                       .dump(2)
                << "\n";
    });
  });
}

}  // namespace fieldsync::cli
