// Accepting connections, the connection limit, and graceful shutdown on SIGINT /
// SIGTERM or stop() (listener.hpp). One I/O thread runs every session coroutine;
// a worker pool runs the requests.
#include "listener.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "session.hpp"

namespace fieldsync::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct HttpServer::Impl {
  Impl(Router& r, ServerLimits l)
      : limits(l),
        workers(static_cast<std::size_t>(std::max(1, limits.workers))),
        host(r, limits, workers),
        acceptor(io),
        signals(io),
        grace(io) {}

  ServerLimits limits;
  asio::io_context io{1};
  asio::thread_pool workers;
  SessionHost host;
  tcp::acceptor acceptor;
  asio::signal_set signals;
  asio::steady_timer grace;
  std::unique_ptr<asio::ssl::context> tls;
  bool shutting_down = false;

  asio::awaitable<void> accept_loop() {
    asio::steady_timer pause(io);
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        // Out of descriptors or similar: wait a little instead of spinning.
        pause.expires_after(std::chrono::milliseconds(50));
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      if (host.stopping || host.sessions.size() >= limits.max_connections) {
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      boost::system::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      asio::co_spawn(io, run_session(std::move(socket), host), asio::detached);
    }
  }

  // On the I/O thread: stop accepting, close idle connections, give busy ones
  // the grace period.
  void begin_shutdown() {
    if (shutting_down) return;
    shutting_down = true;
    host.stopping = true;
    boost::system::error_code ignored;
    acceptor.close(ignored);
    signals.cancel(ignored);
    for (auto& s : host.sessions)
      if (!s.busy) s.close();
    if (host.sessions.empty()) return;
    grace.expires_after(limits.shutdown_grace);
    grace.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      for (auto& s : host.sessions) s.close();
    });
  }
};

HttpServer::HttpServer(Router& router, ServerLimits limits)
    : impl_(std::make_unique<Impl>(router, limits)) {
  impl_->host.on_session_end = [this] {
    if (impl_->shutting_down && impl_->host.sessions.empty()) impl_->grace.cancel();
  };
}

HttpServer::~HttpServer() {
  impl_->workers.join();
}

Result<void> HttpServer::use_tls(const std::string& cert_chain_file, const std::string& key_file) {
  auto context = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION);
  context->set_options(asio::ssl::context::default_workarounds |
                       asio::ssl::context::no_compression | asio::ssl::context::single_dh_use);
  boost::system::error_code ec;
  context->use_certificate_chain_file(cert_chain_file, ec);
  if (ec)
    return Error(Errc::invalid_argument,
                 "cannot use the certificate " + cert_chain_file + ": " + ec.message());
  context->use_private_key_file(key_file, asio::ssl::context::pem, ec);
  if (ec)
    return Error(Errc::invalid_argument, "cannot use the key " + key_file + ": " + ec.message());
  if (SSL_CTX_check_private_key(context->native_handle()) != 1)
    return Error(Errc::invalid_argument, "the key " + key_file + " does not match the certificate");
  impl_->tls = std::move(context);
  impl_->host.tls = impl_->tls.get();
  return {};
}

Result<std::string> HttpServer::listen(const std::string& host, std::uint16_t port) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) {
    tcp::resolver resolver(impl_->io);
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec || results.empty())
      return Error(Errc::network, "cannot resolve " + host + ": " + ec.message());
    address = results.begin()->endpoint().address();
  }
  tcp::endpoint endpoint(address, port);
  auto& a = impl_->acceptor;
  a.open(endpoint.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(endpoint, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    a.close(ignored);
    return Error(Errc::network,
                 "cannot listen on " + host + ":" + std::to_string(port) + ": " + ec.message());
  }
  auto bound = a.local_endpoint(ec);
  if (ec) return Error(Errc::network, "cannot read the bound address: " + ec.message());
  std::string text = bound.address().is_v6() ? "[" + bound.address().to_string() + "]"
                                             : bound.address().to_string();
  return text + ":" + std::to_string(bound.port());
}

void HttpServer::run(bool handle_signals) {
  auto& impl = *impl_;
  if (handle_signals) {
    impl.signals.add(SIGINT);
    impl.signals.add(SIGTERM);
    impl.signals.async_wait([&impl](const boost::system::error_code& ec, int) {
      if (!ec) impl.begin_shutdown();
    });
  }
  if (impl.acceptor.is_open()) asio::co_spawn(impl.io, impl.accept_loop(), asio::detached);
  impl.io.run();
  impl.workers.join();
}

void HttpServer::stop() {
  asio::post(impl_->io, [impl = impl_.get()] { impl->begin_shutdown(); });
}

}  // namespace fieldsync::server
