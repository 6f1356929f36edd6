// Runs the real fieldsync-server binary for end-to-end tests (see server_process.hpp).
// fork+exec with pipes or files for the child's output; never a shell. On Linux a
// child dies with the test program (PR_SET_PDEATHSIG), so a crashed or interrupted
// test leaves no server behind.
#include "support/server_process.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string_view>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

extern char** environ;

namespace fieldsync::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::string errno_text(const std::string& what, int err) {
  return what + ": " + std::strerror(err);
}

// pipe() with both ends close-on-exec, so other children never inherit them.
bool make_pipe(int fds[2]) {
  if (::pipe(fds) != 0) return false;
  ::fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  ::fcntl(fds[1], F_SETFD, FD_CLOEXEC);
  return true;
}

std::vector<char*> make_argv(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  return argv;
}

// Starts args[0] with the given descriptors as its stdin, stdout and stderr.
// Returns the pid, or an error when the program could not be executed (the child
// reports exec's errno through a close-on-exec pipe).
// `env` ("NAME=value") is added to this process's environment, replacing a
// variable of the same name.
Result<pid_t> spawn(const std::vector<std::string>& args, int in_fd, int out_fd, int err_fd,
                    const std::vector<std::string>& env = {}) {
  auto argv = make_argv(args);
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const auto eq = entry.find('=');
    const auto name = entry.substr(0, eq == std::string_view::npos ? entry.size() : eq + 1);
    bool replaced = false;
    for (const auto& extra : env) replaced = replaced || extra.rfind(name, 0) == 0;
    if (!replaced) envp.push_back(*e);
  }
  for (const auto& extra : env) envp.push_back(const_cast<char*>(extra.c_str()));
  envp.push_back(nullptr);
  int report[2];
  if (!make_pipe(report)) return Error(Errc::io, errno_text("pipe", errno));
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(report[0]);
    ::close(report[1]);
    return Error(Errc::io, errno_text("fork", err));
  }
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec.
#ifdef __linux__
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
#endif
    ::signal(SIGPIPE, SIG_DFL);
    if (::dup2(in_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) {
      const int err = errno;
      (void)!::write(report[1], &err, sizeof err);
      ::_exit(127);
    }
    ::execve(argv[0], argv.data(), envp.data());
    const int err = errno;
    (void)!::write(report[1], &err, sizeof err);
    ::_exit(127);
  }
  ::close(report[1]);
  int child_errno = 0;
  ssize_t n = 0;
  do {
    n = ::read(report[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  ::close(report[0]);
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return Error(Errc::io, errno_text("exec " + args[0], child_errno));
  }
  return pid;
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Waits for `pid` until `deadline`; returns the exit code, or nullopt on timeout.
std::optional<int> wait_until(pid_t pid, Clock::time_point deadline) {
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return exit_code_of(status);
    if (r < 0 && errno != EINTR) return -1;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Looks for "listening on 127.0.0.1:PORT" (or any host) in the server's stdout.
std::optional<std::uint16_t> find_port(const std::string& text) {
  const std::string marker = "listening on ";
  const auto at = text.find(marker);
  if (at == std::string::npos) return std::nullopt;
  const auto eol = text.find('\n', at);
  if (eol == std::string::npos) return std::nullopt;  // line not complete yet
  const std::string line = text.substr(at + marker.size(), eol - at - marker.size());
  const auto colon = line.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  unsigned long port = 0;
  try {
    port = std::stoul(line.substr(colon + 1));
  } catch (...) {
    return std::nullopt;
  }
  if (port == 0 || port > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(port);
}

std::string binary_dir() {
  if (const char* env = std::getenv("FIELDSYNC_BINARY_DIR"); env != nullptr && *env != '\0')
    return env;
#ifdef FIELDSYNC_BINARY_DIR
  return FIELDSYNC_BINARY_DIR;
#else
  return ".";
#endif
}

}  // namespace

Result<CommandOutput> run_command(const std::vector<std::string>& args, const std::string& input,
                                  std::chrono::milliseconds timeout) {
  if (args.empty()) return Error(Errc::invalid_argument, "no program given");
  int in_pipe[2];
  int out_pipe[2];
  int err_pipe[2];
  if (!make_pipe(in_pipe)) return Error(Errc::io, errno_text("pipe", errno));
  if (!make_pipe(out_pipe)) {
    ::close(in_pipe[0]);
    ::close(in_pipe[1]);
    return Error(Errc::io, errno_text("pipe", errno));
  }
  if (!make_pipe(err_pipe)) {
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1]}) ::close(fd);
    return Error(Errc::io, errno_text("pipe", errno));
  }
  // Writing to a child that exited must be an EPIPE here, not a signal that
  // kills the test program.
  std::signal(SIGPIPE, SIG_IGN);
  auto spawned = spawn(args, in_pipe[0], out_pipe[1], err_pipe[1]);
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (!spawned) {
    ::close(in_pipe[1]);
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    return spawned.error();
  }
  const pid_t pid = *spawned;

  // Feed stdin and drain stdout/stderr together so no pipe fills up.
  CommandOutput result;
  std::size_t written = 0;
  int in_fd = in_pipe[1];
  if (input.empty()) {
    ::close(in_fd);
    in_fd = -1;
  } else {
    ::fcntl(in_fd, F_SETFL, ::fcntl(in_fd, F_GETFL) | O_NONBLOCK);
  }
  int out_fd = out_pipe[0];
  int err_fd = err_pipe[0];
  const auto deadline = Clock::now() + timeout;
  bool timed_out = false;
  while (out_fd >= 0 || err_fd >= 0 || in_fd >= 0) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd fds[3];
    int n = 0;
    if (in_fd >= 0) fds[n++] = {in_fd, POLLOUT, 0};
    if (out_fd >= 0) fds[n++] = {out_fd, POLLIN, 0};
    if (err_fd >= 0) fds[n++] = {err_fd, POLLIN, 0};
    const int ready = ::poll(fds, static_cast<nfds_t>(n), static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) break;
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in_fd) {
        const ssize_t w = ::write(in_fd, input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<std::size_t>(w);
        if (w < 0 && errno != EAGAIN && errno != EINTR)
          written = input.size();  // EPIPE: child ignores stdin
        if (written == input.size()) {
          ::close(in_fd);
          in_fd = -1;
        }
        continue;
      }
      char buf[4096];
      const ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
      if (r > 0) {
        (fds[i].fd == out_fd ? result.out : result.err).append(buf, static_cast<std::size_t>(r));
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        ::close(fds[i].fd);
        (fds[i].fd == out_fd ? out_fd : err_fd) = -1;
      }
    }
  }
  for (int fd : {in_fd, out_fd, err_fd})
    if (fd >= 0) ::close(fd);
  if (timed_out) {
    ::kill(pid, SIGKILL);
    wait_until(pid, Clock::now() + std::chrono::seconds(10));
    return Error(Errc::timeout,
                 args[0] + " ran longer than " + std::to_string(timeout.count()) + " ms");
  }
  const auto code = wait_until(pid, deadline + std::chrono::seconds(5));
  if (!code) {
    ::kill(pid, SIGKILL);
    wait_until(pid, Clock::now() + std::chrono::seconds(10));
    return Error(Errc::timeout, args[0] + " did not exit after closing its output");
  }
  result.exit_code = *code;
  return result;
}

TempDir::TempDir(const std::string& prefix) {
  // tmpfs when there is one: stores and the server fsync every commit.
  std::string root = "/tmp";
  if (const char* env = std::getenv("FIELDSYNC_TEST_TMP"); env != nullptr && *env != '\0') {
    root = env;
  } else if (::access("/dev/shm", W_OK) == 0) {
    root = "/dev/shm";
  } else if (const char* tmp = std::getenv("TMPDIR"); tmp != nullptr && *tmp != '\0') {
    root = tmp;
  }
  std::string tmpl = root + "/" + prefix + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    std::cerr << errno_text("mkdtemp " + tmpl, errno) << "\n";
    std::abort();  // a test cannot run without its directory
  }
  path_ = buf.data();
}

TempDir::~TempDir() {
  if (std::getenv("FIELDSYNC_KEEP_TMP") != nullptr) {
    std::cerr << "kept " << path_ << "\n";
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string ServerProcess::binary_path() {
  return binary_dir() + "/server/fieldsync-server";
}

bool ServerProcess::binary_available() {
  return ::access(binary_path().c_str(), X_OK) == 0;
}

ServerProcess::ServerProcess(ServerOptions options)
    : options_(std::move(options)), dir_("fieldsync-server"), db_path_(dir_.file("server.db")) {
  for (auto& user : options_.users) {
    if (user.password.empty()) user.password = "pw-" + user.name + "-Xq7v2Lk9";
  }
}

ServerProcess::~ServerProcess() {
  if (running()) (void)stop();
}

std::string ServerProcess::password(const std::string& user) const {
  for (const auto& u : options_.users)
    if (u.name == user) return u.password;
  return {};
}

std::string ServerProcess::base_url() const {
  return std::string(options_.tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
}

std::string ServerProcess::log() const {
  std::string all;
  for (int i = 1; i <= starts_; ++i) {
    all += read_file(dir_.file("serve-" + std::to_string(i) + ".out"));
    all += read_file(dir_.file("serve-" + std::to_string(i) + ".err"));
  }
  return all;
}

Result<CommandOutput> ServerProcess::cli(std::vector<std::string> args,
                                         const std::string& input) const {
  args.insert(args.begin(), binary_path());
  args.push_back("--db");
  args.push_back(db_path_);
  return run_command(args, input);
}

Result<void> ServerProcess::prepare() {
  auto check = [](const Result<CommandOutput>& r, const std::string& what) -> Result<void> {
    if (!r) return r.error();
    if (r->exit_code != 0)
      return Error(Errc::internal,
                   what + " exited with " + std::to_string(r->exit_code) + ": " + r->err + r->out);
    return {};
  };
  if (auto ok = check(cli({"init"}), "init"); !ok) return ok;
  for (const auto& user : options_.users) {
    std::vector<std::string> args = {"user", "add", user.name, "--role", user.role};
    for (const auto& scope : user.scopes) {
      args.push_back("--scope");
      args.push_back(scope);
    }
    args.push_back("--password-stdin");
    if (auto ok = check(cli(args, user.password + "\n"), "user add " + user.name); !ok) return ok;
  }
  for (const auto& form : options_.forms) {
    if (auto ok = check(cli({"form", "publish", form}), "form publish " + form); !ok) return ok;
  }
  prepared_ = true;
  return {};
}

Result<void> ServerProcess::start(std::uint16_t port, const std::vector<std::string>& env) {
  if (running()) return Error(Errc::invalid_argument, "the server is already running");
  if (!binary_available()) return Error(Errc::not_found, "no server binary at " + binary_path());
  if (!prepared_) {
    if (auto ok = prepare(); !ok) return ok;
  }
  ++starts_;
  const std::string out_path = dir_.file("serve-" + std::to_string(starts_) + ".out");
  const std::string err_path = dir_.file("serve-" + std::to_string(starts_) + ".err");
  std::vector<std::string> args = {binary_path(), "serve",    "--db",
                                   db_path_,      "--listen", "127.0.0.1:" + std::to_string(port)};
  args.insert(args.end(), options_.serve_args.begin(), options_.serve_args.end());

  // Output goes to files, not pipes: nobody has to keep draining them.
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const int out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  Result<pid_t> spawned = Error(Errc::io, errno_text("open the server's output files", errno));
  if (null_fd >= 0 && out_fd >= 0 && err_fd >= 0)
    spawned = spawn(args, null_fd, out_fd, err_fd, env);
  for (int fd : {null_fd, out_fd, err_fd})
    if (fd >= 0) ::close(fd);
  if (!spawned) return spawned.error();
  const pid_t pid = *spawned;
  pid_ = pid;

  const auto deadline = Clock::now() + options_.start_timeout;
  for (;;) {
    if (auto found = find_port(read_file(out_path))) {
      port_ = *found;
      return {};
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Error(Errc::internal,
                   "the server exited with " + std::to_string(exit_code_of(status)) +
                       " before listening: " + read_file(err_path) + read_file(out_path));
    }
    if (Clock::now() >= deadline) {
      kill9();
      return Error(Errc::timeout,
                   "the server did not print 'listening on' in time: " + read_file(err_path));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<int> ServerProcess::stop(std::chrono::milliseconds grace) {
  if (!running()) return Error(Errc::invalid_argument, "the server is not running");
  ::kill(pid_, SIGTERM);
  auto code = wait_until(pid_, Clock::now() + grace);
  if (!code) {
    kill9();
    return Error(Errc::timeout,
                 "the server ignored SIGTERM for " + std::to_string(grace.count()) + " ms");
  }
  pid_ = -1;
  return *code;
}

Result<int> ServerProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (!running()) return Error(Errc::invalid_argument, "the server is not running");
  auto code = wait_until(pid_, Clock::now() + timeout);
  if (!code)
    return Error(Errc::timeout,
                 "the server still runs after " + std::to_string(timeout.count()) + " ms");
  pid_ = -1;
  return *code;
}

void ServerProcess::kill9() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  (void)wait_until(pid_, Clock::now() + std::chrono::seconds(30));
  pid_ = -1;
}

}  // namespace fieldsync::testing
