// Sessions of fieldsync-faultproxy. Each direction of a connection is a reader and
// a writer coroutine around a queue: the reader stamps each chunk with its arrival
// time, cuts it when the plan's fault lies in that direction, and computes its
// delivery time on the shaped link; the writer waits until then, writes, and
// injects the fault after the cut chunk. Everything runs on one thread.
#include "proxy.hpp"

#include <chrono>
#include <deque>
#include <limits>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace fieldsync::faultproxy {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using asio::awaitable;

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kChunkBytes = 64 * 1024;
// Bytes a direction may hold before the reader waits for the writer (backpressure).
constexpr std::size_t kMaxQueuedBytes = 1 << 20;

std::int64_t to_us(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

}  // namespace

nlohmann::json Counters::to_json() const {
  return {{"connections", connections},
          {"passed", passed},
          {"upstream_errors", upstream_errors},
          {"faults", faults()},
          {"drop_up", drop_up},
          {"drop_down", drop_down},
          {"reset_up", reset_up},
          {"reset_down", reset_down},
          {"truncate", truncate},
          {"delay", delay},
          {"throttled", throttled},
          {"bytes_up", bytes_up},
          {"bytes_down", bytes_down},
          {"delay_ms", delay_ms},
          {"throttle_delay_ms", throttle_delay_ms}};
}

void FaultLog::line(const std::string& text) {
  std::fputs(text.c_str(), out_);
  std::fputc('\n', out_);
  std::fflush(out_);
}

struct ProxyState {
  ProxyState(asio::io_context& io, ProxyConfig c, FaultLog& l)
      : acceptor(io), config(std::move(c)), log(l), epoch(Clock::now()) {}
  tcp::acceptor acceptor;
  ProxyConfig config;
  FaultLog& log;
  Counters counters;
  Clock::time_point epoch;  // origin of the shaping model's time line
};

namespace {

enum class After { nothing, half_close, abort, fault };

struct Chunk {
  std::string data;
  Clock::time_point arrival;
  Clock::time_point deliver;
  After after = After::nothing;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<ProxyState> state, std::uint64_t id, tcp::socket client)
      : state_(std::move(state)),
        id_(id),
        plan_(plan_connection(state_->config.seed, id, state_->config.rates)),
        client_(std::move(client)),
        server_(client_.get_executor()),
        up_(Direction::up, client_.get_executor(), state_->config.link),
        down_(Direction::down, client_.get_executor(), state_->config.link) {}

  ~Session() { finish(); }

  void start() {
    asio::co_spawn(client_.get_executor(), run(shared_from_this()), asio::detached);
  }

 private:
  struct Pipe {
    Pipe(Direction d, const asio::any_io_executor& ex, const LinkProfile& link)
        : dir(d), wake(ex), space(ex), hold(ex), shaper(link) {}
    Direction dir;
    std::deque<Chunk> queue;
    std::size_t queued_bytes = 0;
    asio::steady_timer wake;   // the writer waits here for chunks
    asio::steady_timer space;  // the reader waits here for room in the queue
    asio::steady_timer hold;   // the writer waits here for a chunk's delivery time
    LinkShaper shaper;
    bool first = true;
    std::uint64_t bytes = 0;  // forwarded
    Clock::time_point first_arrival{};
    std::int64_t span_model_us = 0;  // delivery of the last byte minus arrival of the first
    std::int64_t span_held_us = 0;   // the same, measured when the write completed
  };

  static void notify(asio::steady_timer& t) { t.cancel(); }
  static void arm(asio::steady_timer& t) { t.expires_at(Clock::time_point::max()); }

  void log(std::string_view kind, Direction d, std::uint64_t offset, std::string extra = {}) {
    std::string line = "conn=" + std::to_string(id_) + " kind=" + std::string(kind) +
                       " dir=" + std::string(direction_name(d)) + " offset=" + std::to_string(offset);
    if (!extra.empty()) line += " " + extra;
    state_->log.line(line);
  }

  static awaitable<void> run(std::shared_ptr<Session> self) {
    const auto& up = self->state_->config.upstream;
    tcp::endpoint target(asio::ip::make_address(up.host), up.port);
    auto [ec] = co_await self->server_.async_connect(target, kTuple);
    if (ec) {
      ++self->state_->counters.upstream_errors;
      self->upstream_failed_ = true;
      self->log("upstream_error", Direction::up, 0, "error=\"" + ec.message() + "\"");
      self->close_all(false);
      co_return;
    }
    boost::system::error_code ignored;
    self->client_.set_option(tcp::no_delay(true), ignored);
    self->server_.set_option(tcp::no_delay(true), ignored);
    auto ex = self->client_.get_executor();
    asio::co_spawn(ex, read_side(self, self->up_, self->client_), asio::detached);
    asio::co_spawn(ex, write_side(self, self->up_, self->server_), asio::detached);
    asio::co_spawn(ex, read_side(self, self->down_, self->server_), asio::detached);
    asio::co_spawn(ex, write_side(self, self->down_, self->client_), asio::detached);
  }

  static awaitable<void> read_side(std::shared_ptr<Session> self, Pipe& p, tcp::socket& from) {
    std::vector<char> buf(kChunkBytes);
    const auto& cfg = self->state_->config;
    for (;;) {
      while (p.queued_bytes >= kMaxQueuedBytes && !self->closed_) {
        arm(p.space);
        co_await p.space.async_wait(kTuple);
      }
      if (self->closed_) co_return;
      auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), kTuple);
      if (self->closed_) co_return;
      Chunk c;
      c.arrival = Clock::now();
      if (ec) {
        c.after = ec == asio::error::eof ? After::half_close : After::abort;
        c.deliver = c.arrival;
        self->push(p, std::move(c));
        co_return;
      }
      c.data.assign(buf.data(), n);
      bool cut = false;
      if (p.first) {
        p.first_arrival = c.arrival;
        if (self->plan_.kind != FaultKind::none && self->plan_.direction == p.dir) {
          self->fault_at_ = fault_offset(self->plan_, n);
          c.data.resize(self->fault_at_);
          c.after = After::fault;
          cut = true;
        }
      }
      std::int64_t deliver = p.shaper.schedule(to_us(c.arrival - self->state_->epoch), c.data.size());
      if (p.first && p.dir == Direction::down && self->plan_.delayed) {
        deliver = p.shaper.push_back_to(deliver + cfg.rates.delay_ms * 1000);
        ++self->state_->counters.delay;
        self->state_->counters.delay_ms += cfg.rates.delay_ms;
        self->log("delay", p.dir, 0, "delay_ms=" + std::to_string(cfg.rates.delay_ms));
      }
      p.first = false;
      c.deliver = self->state_->epoch + std::chrono::microseconds(deliver);
      self->push(p, std::move(c));
      if (cut) co_return;
    }
  }

  static awaitable<void> write_side(std::shared_ptr<Session> self, Pipe& p, tcp::socket& to) {
    for (;;) {
      while (p.queue.empty() && !self->closed_) {
        arm(p.wake);
        co_await p.wake.async_wait(kTuple);
      }
      if (self->closed_) co_return;
      Chunk c = std::move(p.queue.front());
      p.queue.pop_front();
      p.queued_bytes -= c.data.size();
      notify(p.space);
      if (c.deliver > Clock::now()) {
        p.hold.expires_at(c.deliver);
        co_await p.hold.async_wait(kTuple);
        if (self->closed_) co_return;
      }
      if (!c.data.empty()) {
        auto [ec, n] = co_await asio::async_write(to, asio::buffer(c.data), kTuple);
        if (self->closed_) co_return;
        if (ec) {
          self->close_all(false);
          co_return;
        }
        p.bytes += n;
        (p.dir == Direction::up ? self->state_->counters.bytes_up : self->state_->counters.bytes_down) += n;
        p.span_model_us = to_us(c.deliver - p.first_arrival);
        p.span_held_us = to_us(Clock::now() - p.first_arrival);
      }
      switch (c.after) {
        case After::nothing:
          break;
        case After::half_close: {
          boost::system::error_code ignored;
          to.shutdown(tcp::socket::shutdown_send, ignored);
          co_return;
        }
        case After::abort:
          self->close_all(false);
          co_return;
        case After::fault:
          self->inject(p.dir);
          co_return;
      }
    }
  }

  void push(Pipe& p, Chunk c) {
    p.queued_bytes += c.data.size();
    p.queue.push_back(std::move(c));
    notify(p.wake);
  }

  void inject(Direction d) {
    auto& k = state_->counters;
    injected_ = true;
    log(fault_kind_name(plan_.kind), d, fault_at_);
    switch (plan_.kind) {
      case FaultKind::drop:
        ++(d == Direction::up ? k.drop_up : k.drop_down);
        close_all(false);
        break;
      case FaultKind::reset:
        ++(d == Direction::up ? k.reset_up : k.reset_down);
        close_all(true);
        break;
      case FaultKind::truncate: {
        // The client sees a clean end of stream; the server is not told and its
        // remaining bytes are never read.
        ++k.truncate;
        boost::system::error_code ignored;
        client_.shutdown(tcp::socket::shutdown_send, ignored);
        break;
      }
      case FaultKind::none:
        break;
    }
  }

  // Closes both sockets; with `reset`, SO_LINGER 0 makes the kernel send RST.
  void close_all(bool reset) {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    for (tcp::socket* s : {&client_, &server_}) {
      if (reset && s->is_open()) s->set_option(asio::socket_base::linger(true, 0), ignored);
      s->close(ignored);
    }
    for (Pipe* p : {&up_, &down_}) {
      p->wake.cancel();
      p->space.cancel();
      p->hold.cancel();
    }
  }

  // Runs when the last coroutine of the connection has finished.
  void finish() noexcept {
    auto& k = state_->counters;
    if (!injected_ && !upstream_failed_) ++k.passed;
    if (!state_->config.link.shapes()) return;
    bool any = false;
    for (Pipe* p : {&up_, &down_}) {
      if (p->bytes == 0) continue;
      any = true;
      k.throttle_delay_ms += p->span_model_us / 1000;
      try {
        log("throttle", p->dir, p->bytes,
            "profile=" + state_->config.link.name + " delay_ms=" + std::to_string(p->span_model_us / 1000) +
                " held_ms=" + std::to_string(p->span_held_us / 1000));
      } catch (...) {
        // Out of memory while formatting a log line: the counters still hold.
      }
    }
    if (any) ++k.throttled;
  }

  std::shared_ptr<ProxyState> state_;
  std::uint64_t id_;
  ConnectionPlan plan_;
  tcp::socket client_;
  tcp::socket server_;
  Pipe up_;
  Pipe down_;
  std::size_t fault_at_ = 0;
  bool injected_ = false;
  bool upstream_failed_ = false;
  bool closed_ = false;
};

awaitable<void> accept_loop(std::shared_ptr<ProxyState> state) {
  for (;;) {
    auto [ec, socket] = co_await state->acceptor.async_accept(kTuple);
    if (!state->acceptor.is_open()) co_return;
    if (ec) {
      // Out of descriptors and the like: back off a little instead of spinning.
      asio::steady_timer pause(state->acceptor.get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(kTuple);
      continue;
    }
    auto id = ++state->counters.connections;
    std::make_shared<Session>(state, id, std::move(socket))->start();
  }
}

}  // namespace

Proxy::Proxy(asio::io_context& io, ProxyConfig config, FaultLog& log)
    : state_(std::make_shared<ProxyState>(io, std::move(config), log)) {}

Proxy::~Proxy() { stop(); }

Result<std::uint16_t> Proxy::open() {
  boost::system::error_code ec;
  tcp::endpoint ep(asio::ip::make_address(state_->config.listen.host, ec), state_->config.listen.port);
  if (ec) return Error(Errc::invalid_argument, "bad listen address: " + ec.message());
  auto& a = state_->acceptor;
  if (a.open(ep.protocol(), ec); ec) return Error(Errc::io, "socket: " + ec.message());
  if (a.set_option(asio::socket_base::reuse_address(true), ec); ec)
    return Error(Errc::io, "SO_REUSEADDR: " + ec.message());
  if (a.bind(ep, ec); ec) return Error(Errc::io, "cannot listen on " + ep.address().to_string() + ":" +
                                                     std::to_string(ep.port()) + ": " + ec.message());
  if (a.listen(asio::socket_base::max_listen_connections, ec); ec)
    return Error(Errc::io, "listen: " + ec.message());
  return a.local_endpoint().port();
}

void Proxy::start() { asio::co_spawn(state_->acceptor.get_executor(), accept_loop(state_), asio::detached); }

void Proxy::stop() {
  boost::system::error_code ignored;
  state_->acceptor.close(ignored);
}

const Counters& Proxy::counters() const noexcept { return state_->counters; }

}  // namespace fieldsync::faultproxy
