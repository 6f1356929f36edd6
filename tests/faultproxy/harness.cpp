// Child process, test server and client for the fieldsync-faultproxy tests.
#include "faultproxy/harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace fieldsync::test {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

std::string temp_path(const std::string& tag) {
  static std::atomic<int> n{0};
  return "/tmp/fieldsync-faultproxy-test-" + std::to_string(::getpid()) + "-" + tag + "-" +
         std::to_string(n++);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Reads from fd until a newline arrives or `timeout_ms` passes; returns the line.
bool read_line(int fd, std::string& buffer, std::string& line, int timeout_ms) {
  auto start = Clock::now();
  for (;;) {
    auto nl = buffer.find('\n');
    if (nl != std::string::npos) {
      line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      return true;
    }
    int left = timeout_ms - static_cast<int>(ms_since(start));
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, left) <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return false;
    buffer.append(buf, static_cast<std::size_t>(n));
  }
}

// Spawns the proxy with stdout to a pipe and stderr to a file.
int spawn_proxy(const std::vector<std::string>& args, int& out_fd, const std::string& err_path) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  std::vector<std::string> argv_s{FIELDSYNC_FAULTPROXY_BIN};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (rc != 0) {
    ::close(pipe_fds[0]);
    throw std::runtime_error(std::string("cannot start the proxy: ") + std::strerror(rc));
  }
  out_fd = pipe_fds[0];
  return pid;
}

int wait_exit(int pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

int loopback_socket() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  return fd;
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

bool send_all(int fd, const char* data, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

void set_timeout(int fd, int seconds) {
  timeval tv{seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

}  // namespace

ExitResult run_proxy_to_exit(const std::vector<std::string>& args) {
  std::string err_path = temp_path("err");
  int out_fd = -1;
  int pid = spawn_proxy(args, out_fd, err_path);
  ExitResult r;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(out_fd, buf, sizeof buf)) > 0) r.out.append(buf, static_cast<std::size_t>(n));
  ::close(out_fd);
  r.exit_code = wait_exit(pid);
  r.err = read_file(err_path);
  std::remove(err_path.c_str());
  return r;
}

ProxyProcess::ProxyProcess(std::vector<std::string> args) : log_path_(temp_path("log")) {
  args.push_back("--log");
  args.push_back(log_path_);
  std::string err_path = log_path_ + ".stderr";
  pid_ = spawn_proxy(args, out_fd_, err_path);
  std::string line;
  if (!read_line(out_fd_, pending_, line, 10000) || line.rfind("listening on 127.0.0.1:", 0) != 0) {
    int code = 0;
    stop(&code);
    throw std::runtime_error("the proxy did not start: '" + line + "' " + read_file(err_path));
  }
  port_ = static_cast<std::uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
}

ProxyProcess::~ProxyProcess() {
  if (pid_ > 0) {
    int code = 0;
    stop(&code);
  }
  std::remove(log_path_.c_str());
  std::remove((log_path_ + ".stderr").c_str());
}

nlohmann::json ProxyProcess::stop(int* exit_code) {
  if (pid_ <= 0) return nullptr;
  ::kill(pid_, SIGTERM);
  std::string line;
  bool got = read_line(out_fd_, pending_, line, 10000);
  int code = wait_exit(pid_);
  pid_ = -1;
  ::close(out_fd_);
  out_fd_ = -1;
  if (exit_code) *exit_code = code;
  if (!got) return nullptr;
  return nlohmann::json::parse(line, nullptr, false);
}

std::vector<LogLine> ProxyProcess::log() const {
  std::vector<LogLine> out;
  std::istringstream in(read_file(log_path_));
  std::string text;
  while (std::getline(in, text)) {
    LogLine l;
    std::istringstream words(text);
    std::string w;
    while (words >> w) {
      auto eq = w.find('=');
      if (eq == std::string::npos) continue;
      std::string k = w.substr(0, eq), v = w.substr(eq + 1);
      if (k == "conn")
        l.conn = std::stoull(v);
      else if (k == "kind")
        l.kind = v;
      else if (k == "dir")
        l.dir = v;
      else if (k == "offset")
        l.offset = std::stoull(v);
      else
        l.extra[k] = v;
    }
    out.push_back(std::move(l));
  }
  return out;
}

TestServer::TestServer(std::size_t request_size, std::string response)
    : request_size_(request_size), response_(std::move(response)) {
  listen_fd_ = loopback_socket();
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  auto addr = loopback(0);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 128) != 0)
    throw std::runtime_error("test server cannot listen");
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] {
    for (;;) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (stopping_) return;
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      std::size_t index;
      {
        std::lock_guard lock(mu_);
        index = conns_.size();
        conns_.emplace_back();
      }
      ++active_;
      threads_.emplace_back([this, fd, index] {
        handle(fd, index);
        --active_;
      });
    }
  });
}

TestServer::~TestServer() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  ::close(listen_fd_);
  acceptor_.join();
  for (auto& t : threads_) t.join();
}

void TestServer::handle(int fd, std::size_t index) {
  set_timeout(fd, 20);
  std::vector<char> buf(64 * 1024);
  std::string request;
  bool eof = false;
  for (;;) {
    if (request_size_ > 0 && request.size() >= request_size_) break;
    ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof = true;
      break;
    }
    if (request_size_ == 0) {
      if (!send_all(fd, buf.data(), static_cast<std::size_t>(n))) break;
    }
    request.append(buf.data(), static_cast<std::size_t>(n));
  }
  bool answered = false;
  if (request_size_ > 0 && !eof && request.size() >= request_size_) {
    answered = send_all(fd, response_.data(), response_.size());
    ::shutdown(fd, SHUT_WR);
    while (::recv(fd, buf.data(), buf.size(), 0) > 0) {
    }
  } else if (request_size_ == 0) {
    ::shutdown(fd, SHUT_WR);
    answered = true;
  }
  ::close(fd);
  std::lock_guard lock(mu_);
  conns_[index].received = request.size();
  conns_[index].answered = answered;
  conns_[index].request = request_size_ > 0 ? request : std::string();
}

std::vector<ServerConn> TestServer::connections() {
  auto start = Clock::now();
  while (active_ > 0 && ms_since(start) < 10000)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::lock_guard lock(mu_);
  return conns_;
}

ClientResult exchange(std::uint16_t port, const std::string& request, bool half_close) {
  ClientResult r;
  auto start = Clock::now();
  int fd = loopback_socket();
  set_timeout(fd, 30);
  auto addr = loopback(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot connect to the proxy");
  }
  Clock::time_point sent_at{};
  auto send_part = [&] {
    send_all(fd, request.data(), request.size());
    sent_at = Clock::now();
    if (half_close) ::shutdown(fd, SHUT_WR);
  };
  std::thread sender;
  bool large = request.size() > 64 * 1024;
  if (large)
    sender = std::thread(send_part);
  else
    send_part();
  std::vector<char> buf(64 * 1024);
  for (;;) {
    ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      r.eof = true;
      break;
    }
    if (n < 0) {
      r.reset = errno == ECONNRESET;
      break;
    }
    if (r.received.empty() && !large)
      r.first_byte_ms = std::chrono::duration<double, std::milli>(Clock::now() - sent_at).count();
    r.received.append(buf.data(), static_cast<std::size_t>(n));
  }
  if (sender.joinable()) sender.join();
  ::close(fd);
  r.total_ms = ms_since(start);
  return r;
}

std::string pattern_bytes(std::size_t n, std::uint64_t seed) {
  std::string s(n, '\0');
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x & 0xFF);
  }
  return s;
}

}  // namespace fieldsync::test
