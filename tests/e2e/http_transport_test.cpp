// The Boost.Beast transport (fieldsync::http) against a small in-process HTTP(S)
// server whose misbehaviour each test chooses: URL parsing, keep-alive and
// reconnection, deadlines, limits, status codes and TLS verification.
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <catch2/catch.hpp>

#include "fieldsync/http_transport.hpp"
#include "support/server_process.hpp"
#include "tls_certs.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using fieldsync::Errc;
using fieldsync::HttpRequest;
using fieldsync::HttpTransportOptions;

// What the test server does with one request.
struct Reply {
  http::response<http::string_body> response;
  bool close_after = false;           // close the socket after answering
  std::chrono::milliseconds hang{0};  // wait this long before answering
  std::string raw;                    // when set, written instead of `response`
};

Reply ok_reply(std::string body, unsigned status = 200) {
  Reply r;
  r.response.result(status);
  r.response.version(11);
  r.response.set(http::field::content_type, "application/json");
  r.response.body() = std::move(body);
  r.response.keep_alive(true);
  r.response.prepare_payload();
  return r;
}

// One connection at a time, on its own thread. `connections()` counts accepts.
class TestServer {
 public:
  using Handler = std::function<Reply(const http::request<http::string_body>&)>;

  explicit TestServer(Handler handler, ssl::context* tls = nullptr)
      : handler_(std::move(handler)),
        tls_(tls),
        acceptor_(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { run(); });
  }

  ~TestServer() {
    stopping_ = true;
    boost::system::error_code ec;
    tcp::socket poke(ioc_);
    poke.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ec);
    thread_.join();
  }

  unsigned short port() const { return port_; }
  int connections() const { return connections_; }
  int requests() const { return requests_; }
  http::request<http::string_body> last_request() {
    std::lock_guard lock(mutex_);
    return last_;
  }

 private:
  void run() {
    while (!stopping_) {
      tcp::socket socket(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stopping_) break;
      ++connections_;
      if (tls_ != nullptr) {
        beast::ssl_stream<tcp::socket> stream(std::move(socket), *tls_);
        stream.handshake(ssl::stream_base::server, ec);
        if (!ec) serve(stream);
      } else {
        serve(socket);
      }
    }
  }

  template <class Stream>
  void serve(Stream& stream) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      boost::system::error_code ec;
      http::read(stream, buffer, req, ec);
      if (ec) return;
      ++requests_;
      {
        std::lock_guard lock(mutex_);
        last_ = req;
      }
      Reply reply = handler_(req);
      for (auto waited = 0ms; waited < reply.hang && !stopping_; waited += 10ms)
        std::this_thread::sleep_for(10ms);
      if (!reply.raw.empty()) {
        asio::write(stream, asio::buffer(reply.raw), ec);
      } else {
        http::write(stream, reply.response, ec);
      }
      if (ec || reply.close_after) {
        beast::get_lowest_layer(stream).close();
        return;
      }
    }
  }

  Handler handler_;
  ssl::context* tls_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  unsigned short port_ = 0;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> requests_{0};
  std::mutex mutex_;
  http::request<http::string_body> last_;
};

std::unique_ptr<fieldsync::Transport> transport_for(const std::string& url,
                                                    const std::string& ca = {}) {
  auto t = fieldsync::make_http_transport(HttpTransportOptions{url, ca});
  REQUIRE(t.ok());
  return std::move(t).value();
}

std::string local_url(unsigned short port) {
  return "http://127.0.0.1:" + std::to_string(port);
}

HttpRequest get(std::string target) {
  return HttpRequest{"GET", std::move(target), {}, {}};
}

}  // namespace

TEST_CASE("base URLs the transport cannot use are refused", "[http][url]") {
  const char* bad[] = {"",
                       "127.0.0.1:8080",
                       "ftp://example.org",
                       "ws://example.org",
                       "http://",
                       "http://:8080",
                       "http://example.org:",
                       "http://example.org:0",
                       "http://example.org:65536",
                       "http://example.org:80a",
                       "http://example.org:-1",
                       "http://user:pw@example.org",
                       "http://example.org/sync?x=1",
                       "http://example.org/#top",
                       "http://exa mple.org",
                       "https://[::1",
                       "https://[not-ip]:443",
                       "https://[::1]x"};
  for (const char* url : bad) {
    INFO(url);
    auto t = fieldsync::make_http_transport(HttpTransportOptions{url, {}});
    REQUIRE_FALSE(t.ok());
    CHECK(t.error().code == Errc::invalid_argument);
  }
  const char* good[] = {"http://localhost",          "HTTP://LocalHost:8080",
                        "https://example.org:8443/", "https://example.org/fieldsync/api",
                        "http://[::1]:8080",         "http://10.0.0.1:1"};
  for (const char* url : good) {
    INFO(url);
    CHECK(fieldsync::make_http_transport(HttpTransportOptions{url, {}}).ok());
  }
}

TEST_CASE("a CA file that cannot be loaded is refused up front", "[http][url]") {
  fieldsync::testing::TempDir dir("fieldsync-http");
  auto missing = fieldsync::make_http_transport(
      HttpTransportOptions{"https://localhost", dir.file("nope.pem")});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::invalid_argument);
  auto plain =
      fieldsync::make_http_transport(HttpTransportOptions{"http://localhost", dir.file("ca.pem")});
  REQUIRE_FALSE(plain.ok());
  CHECK(plain.error().code == Errc::invalid_argument);
}

TEST_CASE("requests reach the server as given, under the base path", "[http]") {
  TestServer server([](const auto& req) {
    return ok_reply("{\"echo\":" + std::to_string(req.body().size()) + "}", 201);
  });
  auto t = transport_for(local_url(server.port()) + "/fieldsync/");
  HttpRequest req{"POST",
                  "/v1/sync?x=1",
                  {{"Content-Type", "application/json"}, {"X-Trace", "abc"}},
                  "{\"a\":1}"};
  auto res = t->send(req, 5s);
  REQUIRE(res.ok());
  CHECK(res->status == 201);
  CHECK(res->body == "{\"echo\":7}");
  CHECK(res->header("content-type") == "application/json");
  auto seen = server.last_request();
  CHECK(seen.method_string() == "POST");
  CHECK(seen.target() == "/fieldsync/v1/sync?x=1");
  CHECK(seen[http::field::host] == "127.0.0.1:" + std::to_string(server.port()));
  CHECK(seen[http::field::content_length] == "7");
  CHECK(seen["X-Trace"] == "abc");
  CHECK(seen[http::field::user_agent] == "fieldsync-core/0.1");
  CHECK(seen.body() == "{\"a\":1}");

  SECTION("malformed requests are caller errors and send nothing") {
    const HttpRequest bad[] = {
        get("v1/forms"),
        get("/v1/forms HTTP/1.1\r\nX: y"),
        HttpRequest{"", "/v1/forms", {}, {}},
        HttpRequest{"GET /x", "/v1/forms", {}, {}},
        HttpRequest{"GET", "/v1/forms", {{"X-Trace", "a\r\nAuthorization: Bearer stolen"}}, {}},
        HttpRequest{"GET", "/v1/forms", {{"X-Bad:Name", "v"}}, {}},
    };
    const int before = server.requests();
    for (const auto& r : bad) {
      INFO(r.method << " " << r.target);
      auto res = t->send(r, 5s);
      REQUIRE_FALSE(res.ok());
      CHECK(res.error().code == Errc::invalid_argument);
    }
    CHECK(server.requests() == before);
  }
}

TEST_CASE("4xx and 5xx answers are responses, not errors", "[http]") {
  unsigned status = 0;
  TestServer server([&](const auto&) {
    return ok_reply("{\"error\":{\"code\":\"x\",\"message\":\"y\"}}", status);
  });
  auto t = transport_for(local_url(server.port()));
  for (unsigned s : {400u, 401u, 404u, 413u, 429u, 500u, 503u}) {
    status = s;
    auto res = t->send(get("/v1/forms"), 5s);
    REQUIRE(res.ok());
    CHECK(res->status == static_cast<int>(s));
  }
  CHECK(server.connections() == 1);
}

TEST_CASE("one connection is kept alive across exchanges", "[http][keepalive]") {
  TestServer server([](const auto& req) { return ok_reply(std::string(req.target())); });
  auto t = transport_for(local_url(server.port()));
  for (int i = 0; i < 5; ++i) {
    auto res = t->send(get("/n/" + std::to_string(i)), 5s);
    REQUIRE(res.ok());
    CHECK(res->body == "/n/" + std::to_string(i));
  }
  CHECK(server.connections() == 1);
  CHECK(server.requests() == 5);
}

TEST_CASE("a connection the server closed is replaced without failing the call",
          "[http][keepalive]") {
  bool close_after = false;
  bool answer_close = false;
  TestServer server([&](const auto&) {
    Reply r = ok_reply("{}");
    r.close_after = close_after;
    if (answer_close) r.response.keep_alive(false);
    return r;
  });
  auto t = transport_for(local_url(server.port()));

  SECTION("closed while idle (server idle timeout)") {
    close_after = true;  // answers "keep-alive" but closes: the client only sees EOF later
    for (int i = 0; i < 4; ++i) {
      auto res = t->send(get("/v1/forms"), 5s);
      REQUIRE(res.ok());
      // Let the FIN arrive before the next call, as after any idle period.
      std::this_thread::sleep_for(20ms);
    }
    CHECK(server.connections() == 4);
    CHECK(server.requests() == 4);
  }
  SECTION("the answer said Connection: close") {
    answer_close = true;
    close_after = true;
    for (int i = 0; i < 3; ++i) REQUIRE(t->send(get("/v1/forms"), 5s).ok());
    CHECK(server.connections() == 3);
    CHECK(server.requests() == 3);
  }
}

TEST_CASE("no server listening is a network error", "[http][errors]") {
  unsigned short port = 0;
  {
    asio::io_context ioc;
    tcp::acceptor probe(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = probe.local_endpoint().port();
  }
  auto t = transport_for(local_url(port));
  auto res = t->send(get("/healthz"), 5s);
  REQUIRE_FALSE(res.ok());
  CHECK(res.error().code == Errc::network);
  CHECK(fieldsync::errc_is_transient(res.error().code));
}

TEST_CASE("the deadline bounds the whole exchange", "[http][errors]") {
  // Read by the server's thread, set by the test's: atomic (TSan checks it).
  std::atomic<long long> hang_ms{0};
  TestServer server([&](const auto&) {
    Reply r = ok_reply("{}");
    r.hang = std::chrono::milliseconds(hang_ms.load());
    return r;
  });
  auto t = transport_for(local_url(server.port()));
  hang_ms = 3000;
  const auto start = std::chrono::steady_clock::now();
  auto res = t->send(get("/slow"), 300ms);
  const auto took = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(res.ok());
  CHECK(res.error().code == Errc::timeout);
  CHECK(took >= 250ms);
  CHECK(took < 2000ms);

  // The transport recovers: the next call opens a fresh connection and succeeds.
  hang_ms = 0;
  auto again = t->send(get("/fast"), 5s);
  REQUIRE(again.ok());
  CHECK(again->status == 200);
}

TEST_CASE("malformed or oversized answers are protocol errors", "[http][errors]") {
  std::string raw;
  TestServer server([&](const auto&) {
    Reply r;
    r.raw = raw;
    r.close_after = true;
    return r;
  });
  auto t = transport_for(local_url(server.port()));
  SECTION("a body over the 64 MiB limit is refused from its Content-Length") {
    raw = "HTTP/1.1 200 OK\r\nContent-Length: 70000000\r\n\r\n{}";
    auto res = t->send(get("/big"), 5s);
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().code == Errc::protocol);
  }
  SECTION("not HTTP at all") {
    raw = "SSH-2.0-OpenSSH_9.2\r\n";
    auto res = t->send(get("/x"), 5s);
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().code == Errc::protocol);
  }
  SECTION("the connection ends in the middle of the body") {
    raw = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial\":";
    auto res = t->send(get("/cut"), 5s);
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().code == Errc::network);
  }
  SECTION("a body delimited by the end of the connection is read whole") {
    raw = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"whole\":true}";
    auto res = t->send(get("/eof"), 5s);
    REQUIRE(res.ok());
    CHECK(res->body == "{\"whole\":true}");
  }
}

TEST_CASE("HEAD answers carry no body", "[http]") {
  TestServer server([](const auto& req) {
    Reply r = ok_reply("0123456789");
    if (req.method() == http::verb::head) r.response.body().clear();
    r.response.content_length(10);
    return r;
  });
  auto t = transport_for(local_url(server.port()));
  auto head = t->send(HttpRequest{"HEAD", "/x", {}, {}}, 5s);
  REQUIRE(head.ok());
  CHECK(head->status == 200);
  CHECK(head->body.empty());
  auto body = t->send(get("/x"), 5s);
  REQUIRE(body.ok());
  CHECK(body->body == "0123456789");
  CHECK(server.connections() == 1);
}

TEST_CASE("HTTPS verifies the certificate chain and the host name", "[http][tls]") {
  fieldsync::testing::TempDir dir("fieldsync-tls");
  auto certs = fieldsync::testing::make_tls_certs(dir.path());
  REQUIRE(certs.ok());
  ssl::context server_ctx(ssl::context::tls_server);
  server_ctx.use_certificate_chain_file(certs->server_cert);
  server_ctx.use_private_key_file(certs->server_key, ssl::context::pem);
  TestServer server([](const auto&) { return ok_reply("{\"tls\":true}"); }, &server_ctx);
  const std::string port = std::to_string(server.port());

  SECTION("trusted CA and matching name") {
    auto t = transport_for("https://localhost:" + port, certs->ca);
    for (int i = 0; i < 3; ++i) {
      auto res = t->send(get("/v1/forms"), 5s);
      REQUIRE(res.ok());
      CHECK(res->body == "{\"tls\":true}");
    }
    CHECK(server.connections() == 1);
    CHECK(server.last_request()[http::field::host] == "localhost:" + port);
  }
  SECTION("a certificate from an untrusted CA") {
    auto t = transport_for("https://localhost:" + port, certs->other_ca);
    auto res = t->send(get("/v1/forms"), 5s);
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().code == Errc::tls);
    CHECK_FALSE(fieldsync::errc_is_transient(res.error().code));
  }
  SECTION("the system trust store does not know the test CA") {
    auto t = transport_for("https://localhost:" + port);
    auto res = t->send(get("/v1/forms"), 5s);
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().code == Errc::tls);
  }
  SECTION("a host name the certificate does not name") {
    auto t = transport_for("https://127.0.0.1:" + port, certs->ca);
    auto res = t->send(get("/v1/forms"), 5s);
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().code == Errc::tls);
    CHECK(res.error().message.find("host name") != std::string::npos);
  }
  SECTION("plain HTTP spoken to a TLS port fails without a response") {
    auto t = transport_for("http://localhost:" + port);
    auto res = t->send(get("/v1/forms"), 2s);
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().code != Errc::tls);
  }
}

TEST_CASE("TLS spoken to a plain HTTP port is a network error, not a certificate one",
          "[http][tls]") {
  fieldsync::testing::TempDir dir("fieldsync-tls");
  auto certs = fieldsync::testing::make_tls_certs(dir.path());
  REQUIRE(certs.ok());
  TestServer server([](const auto&) { return ok_reply("{}"); });
  auto t = transport_for("https://localhost:" + std::to_string(server.port()), certs->ca);
  auto res = t->send(get("/v1/forms"), 5s);
  REQUIRE_FALSE(res.ok());
  CHECK(res.error().code == Errc::network);
}
