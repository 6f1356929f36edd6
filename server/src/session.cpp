// One connection, read top to bottom: a timeout before every read, header and body
// limits, the request handed to the worker pool, the answer written, keep-alive.
#include "session.hpp"

#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "fieldsync/protocol.hpp"

namespace fieldsync::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

// Takes the body out of `res` (a pull answer is up to megabytes).
http::response<http::string_body> to_beast(Response& res, bool keep_alive) {
  http::response<http::string_body> msg{static_cast<http::status>(res.status), 11};
  msg.set(http::field::server, "fieldsync-server");
  for (const auto& [name, value] : res.headers) msg.insert(name, value);
  msg.body() = std::move(res.body);
  msg.keep_alive(keep_alive);
  msg.prepare_payload();
  return msg;
}

Response error_answer(int status, std::string_view code, std::string_view message) {
  Response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.headers.emplace_back("Cache-Control", "no-store");
  r.body = error_body(code, message).dump();
  return r;
}

// The answer to a request that could not be read, or nothing when the connection
// simply ended (closed by the peer, timed out, reset).
std::optional<Response> answer_for_read_error(const beast::error_code& ec,
                                              const ServerLimits& limits) {
  if (ec == http::error::body_limit)
    return error_answer(
        413, "payload_too_large",
        "the body is over the limit of " + std::to_string(limits.body_limit) + " bytes");
  if (ec == http::error::header_limit)
    return error_answer(
        431, "bad_request",
        "the request header is over " + std::to_string(limits.header_limit) + " bytes");
  if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message)
    return error_answer(400, "bad_request", "malformed HTTP request: " + ec.message());
  return std::nullopt;
}

// Moves the body out of `msg` (up to the body limit, megabytes); the headers stay.
Request to_request(http::request<http::string_body>& msg, std::string remote) {
  Request req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  for (const auto& field : msg)
    req.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  req.body = std::move(msg.body());
  req.remote_address = std::move(remote);
  return req;
}

// Bytes of request bodies this connection holds in host.body_bytes.
struct BodyReservation {
  explicit BodyReservation(SessionHost& h) : host(h) {}
  ~BodyReservation() { host.body_bytes -= bytes; }
  BodyReservation(const BodyReservation&) = delete;
  BodyReservation& operator=(const BodyReservation&) = delete;

  SessionHost& host;
  std::size_t bytes = 0;
};

// The request loop over a plain or TLS stream (already handshaken).
template <class Stream>
asio::awaitable<void> serve_requests(Stream& stream, SessionHost& host,
                                     std::list<SessionHost::Entry>::iterator entry,
                                     const std::string& remote) {
  const ServerLimits& limits = host.limits;
  auto& lowest = beast::get_lowest_layer(stream);
  beast::flat_buffer buffer;
  for (;;) {
    entry->busy = false;
    if (host.stopping) break;
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(limits.header_limit));
    parser.body_limit(limits.body_limit);

    lowest.expires_after(limits.header_timeout);
    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, kAwait);
    entry->busy = true;
    // The body's bytes are reserved in the server-wide budget before it is read,
    // and given back once the answer is written (or the connection ends).
    BodyReservation reservation(host);
    if (!ec) {
      const std::size_t size = parser.content_length()
                                   ? static_cast<std::size_t>(*parser.content_length())
                                   : (parser.chunked() ? limits.body_limit : std::size_t{0});
      if (size > 0 && host.body_bytes > 0 && host.body_bytes + size > limits.body_memory) {
        // One body always fits (nothing else held), so every client progresses.
        auto busy = error_answer(429, "too_many_requests",
                                 "the server is holding as many request bodies as it may; retry "
                                 "after the time in Retry-After");
        busy.headers.emplace_back("Retry-After", std::to_string(limits.body_memory_retry.count()));
        host.router.note_refused(std::string_view(parser.get().method_string()),
                                 std::string_view(parser.get().target()), remote, busy.status);
        auto msg = to_beast(busy, false);
        lowest.expires_after(limits.write_timeout);
        co_await http::async_write(stream, msg, kAwait);
        break;
      }
      reservation.bytes = size;
      host.body_bytes += size;
      if (beast::iequals(parser.get()[http::field::expect], "100-continue") && !parser.is_done()) {
        http::response<http::empty_body> cont{http::status::continue_, 11};
        lowest.expires_after(limits.write_timeout);
        auto [wec, wn] = co_await http::async_write(stream, cont, kAwait);
        if (wec) break;
      }
      while (!parser.is_done()) {
        lowest.expires_after(limits.body_timeout);
        auto [bec, bn] = co_await http::async_read_some(stream, buffer, parser, kAwait);
        if (bec) {
          ec = bec;
          break;
        }
      }
    }
    if (ec) {
      auto early = answer_for_read_error(ec, limits);
      if (!early) break;
      // The header may be incomplete (431, malformed): method and target only if read.
      const bool head = parser.is_header_done();
      std::string_view method, target;
      if (head) {
        method = std::string_view(parser.get().method_string());
        target = std::string_view(parser.get().target());
      }
      host.router.note_refused(method, target, remote, early->status);
      // The rest of the request cannot be trusted: answer, then close.
      auto msg = to_beast(*early, false);
      lowest.expires_after(limits.write_timeout);
      co_await http::async_write(stream, msg, kAwait);
      break;
    }

    Request req = to_request(parser.get(), remote);
    const bool keep_alive = parser.get().keep_alive();
    Router& router = host.router;
    Response res = co_await asio::co_spawn(
        host.workers.get_executor(),
        [&router, &req]() -> asio::awaitable<Response> { co_return router.handle_request(req); },
        asio::use_awaitable);

    auto msg = to_beast(res, keep_alive && !host.stopping);
    lowest.expires_after(limits.write_timeout);
    auto [wec, wn] = co_await http::async_write(stream, msg, kAwait);
    if (wec || !msg.keep_alive()) break;
  }
}

}  // namespace

asio::awaitable<void> run_session(tcp::socket socket, SessionHost& host) {
  beast::error_code ignored;
  std::string remote;
  if (auto ep = socket.remote_endpoint(ignored); !ignored) remote = ep.address().to_string();
  beast::tcp_stream tcp_stream(std::move(socket));
  std::optional<beast::ssl_stream<beast::tcp_stream&>> tls;
  if (host.tls) tls.emplace(tcp_stream, *host.tls);

  host.sessions.push_back(SessionHost::Entry{[&tcp_stream] {
    beast::error_code ec;
    tcp_stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    tcp_stream.socket().close(ec);
  }});
  // Leaves the registry however the coroutine ends (before the streams go away).
  struct Registration {
    SessionHost& host;
    std::list<SessionHost::Entry>::iterator it;
    ~Registration() {
      host.sessions.erase(it);
      if (host.on_session_end) host.on_session_end();
    }
  } registration{host, std::prev(host.sessions.end())};

  if (tls) {
    registration.it->busy = true;
    tcp_stream.expires_after(host.limits.header_timeout);
    auto [ec] = co_await tls->async_handshake(asio::ssl::stream_base::server, kAwait);
    if (!ec) {
      co_await serve_requests(*tls, host, registration.it, remote);
      tcp_stream.expires_after(std::chrono::seconds(5));
      co_await tls->async_shutdown(kAwait);
    }
  } else {
    co_await serve_requests(tcp_stream, host, registration.it, remote);
  }
  tcp_stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  tcp_stream.socket().close(ignored);
}

}  // namespace fieldsync::server
