// Test fixture that runs the REAL fieldsync-server binary: a fresh SQLite file in a
// temp dir, users created through the server's CLI, `serve` on 127.0.0.1:0 with the
// bound port read from its stdout, stop with SIGTERM (or SIGKILL for crash tests),
// restart on the same database. Children are started with fork+exec (no shell)
// and, on Linux, die with the thread that started them, so an interrupted test
// leaves no server behind. Standard library and POSIX only: this file is compiled
// into every test program and does nothing unless used.
#pragma once

#include <sys/types.h>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fieldsync/error.hpp"

namespace fieldsync::testing {

// Output of a finished child process.
struct CommandOutput {
  int exit_code = -1;  // exit status, or 128 + signal number
  std::string out;
  std::string err;
};

// Runs `argv` (argv[0] is a path; no shell, no PATH search) with `input` on its
// stdin, waits at most `timeout`, and collects stdout and stderr. Fails with
// Errc::io when the program cannot be started, Errc::timeout when it was killed
// for running too long. A non-zero exit is a CommandOutput, not an error. Sets
// SIGPIPE to "ignore" in this process (a child that exits early must not kill
// the test program).
Result<CommandOutput> run_command(const std::vector<std::string>& argv,
                                  const std::string& input = {},
                                  std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A temporary directory removed (recursively) on destruction, unless the
// environment variable FIELDSYNC_KEEP_TMP is set (then its path is printed).
// Made under FIELDSYNC_TEST_TMP, else /dev/shm, else TMPDIR, else /tmp.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "fieldsync-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct ServerUser {
  std::string name;
  std::string role = "officer";  // "officer" | "admin"
  std::vector<std::string> scopes;
  std::string password;  // empty = the fixture makes one up (see password())
};

struct ServerOptions {
  std::vector<ServerUser> users;
  // Form definition files to publish before the first start (absolute paths).
  std::vector<std::string> forms;
  // Appended to `serve` (e.g. {"--tls-cert", cert, "--tls-key", key}).
  std::vector<std::string> serve_args;
  bool tls = false;  // base_url() says https:// (serve_args must carry the cert)
  std::chrono::milliseconds start_timeout{20000};
};

class ServerProcess {
 public:
  // <bin>/server/fieldsync-server, <bin> from the FIELDSYNC_BINARY_DIR environment
  // variable, else the compile definition of the same name.
  static std::string binary_path();
  static bool binary_available();

  explicit ServerProcess(ServerOptions options);
  // Stops the server (SIGTERM, then SIGKILL after 10 s) and removes the temp dir.
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // First call: initialises the database, creates the users and publishes the
  // forms with the server CLI, then serves. Later calls (after stop/kill) restart
  // on the same database. `port` 0 = any free port; pass port() to come back on
  // the same address. Waits until the server printed "listening on HOST:PORT".
  // `env` ("NAME=value", e.g. "FIELDSYNC_CRASH_AT=before_commit") is added to the
  // environment of this start only.
  Result<void> start(std::uint16_t port = 0, const std::vector<std::string>& env = {});
  // SIGTERM and wait; returns the exit code (128 + signal when killed by one).
  Result<int> stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  // Waits (without signalling) for the server to exit by itself, e.g. at a crash
  // point; returns the exit code (128 + signal). Errc::timeout when it still runs.
  Result<int> wait_exit(std::chrono::milliseconds timeout);
  // SIGKILL and wait (crash tests).
  void kill9();
  // Replaces ServerOptions::serve_args for the next start() (e.g. a restart with
  // another token lifetime).
  void set_serve_args(std::vector<std::string> args) { options_.serve_args = std::move(args); }
  bool running() const { return pid_ > 0; }

  // Runs `fieldsync-server <args...> --db <db>` and returns its output.
  Result<CommandOutput> cli(std::vector<std::string> args, const std::string& input = {}) const;

  std::uint16_t port() const { return port_; }
  std::string base_url() const;
  const std::string& db_path() const { return db_path_; }
  const std::string& dir() const { return dir_.path(); }
  // The password of a user given in the options.
  std::string password(const std::string& user) const;
  // The server's stderr so far (for failure messages).
  std::string log() const;

 private:
  Result<void> prepare();

  ServerOptions options_;
  TempDir dir_;
  std::string db_path_;
  bool prepared_ = false;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  int starts_ = 0;
};

}  // namespace fieldsync::testing
