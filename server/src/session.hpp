// One HTTP connection as a coroutine, and what it shares with the listener.
// Private to listener.cpp and session.cpp (it brings in Boost.Asio).
#pragma once

#include <atomic>
#include <functional>
#include <list>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/thread_pool.hpp>

#include "limits.hpp"
#include "router.hpp"

namespace fieldsync::server {

// State shared by the sessions of one server. Touched only on the I/O thread,
// except `workers` (which runs requests) and `stopping` (read anywhere).
struct SessionHost {
  SessionHost(Router& r, const ServerLimits& l, boost::asio::thread_pool& w)
      : router(r), limits(l), workers(w) {}

  struct Entry {
    std::function<void()> close;  // closes the connection's socket
    bool busy = false;            // a request is being read, handled or answered
  };

  Router& router;
  const ServerLimits& limits;
  boost::asio::thread_pool& workers;
  std::atomic<bool> stopping{false};
  std::list<Entry> sessions;
  std::size_t body_bytes = 0;                // request bodies held now (limits.body_memory)
  std::function<void()> on_session_end;      // lets the listener finish a shutdown
  boost::asio::ssl::context* tls = nullptr;  // set: every connection is HTTPS
};

// Serves requests on `socket` (after a TLS handshake when host.tls is set) until
// the peer closes, a timeout or error, or a shutdown. Runs on the I/O thread;
// request handling runs on host.workers.
boost::asio::awaitable<void> run_session(boost::asio::ip::tcp::socket socket, SessionHost& host);

}  // namespace fieldsync::server
