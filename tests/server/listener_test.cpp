// The HTTP layer over real sockets on 127.0.0.1: keep-alive, chunked bodies,
// 100-continue, body and header limits, malformed HTTP, the connection limit and
// graceful shutdown.
#include <catch2/catch.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <thread>

#include "listener.hpp"
#include "server_fixture.hpp"

using namespace fieldsync;
using namespace fieldsync::server;
using namespace fieldsync::server::test;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

struct LiveServer {
  ServerFixture fixture;
  std::unique_ptr<HttpServer> server;
  std::thread thread;
  std::uint16_t port = 0;

  explicit LiveServer(ServerLimits limits = {}) : fixture(RouterOptions{limits, {}, {}, {}}) {
    limits.workers = 2;
    server = std::make_unique<HttpServer>(*fixture.router, limits);
    auto bound = server->listen("127.0.0.1", 0);
    REQUIRE(bound.ok());
    port = static_cast<std::uint16_t>(std::stoi(bound->substr(bound->rfind(':') + 1)));
    thread = std::thread([this] { server->run(false); });
  }
  ~LiveServer() { stop(); }
  void stop() {
    if (!thread.joinable()) return;
    server->stop();
    thread.join();
  }
};

struct Client {
  asio::io_context io;
  tcp::socket socket{io};
  beast::flat_buffer buffer;

  explicit Client(std::uint16_t port) {
    socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }

  http::response<http::string_body> send(http::request<http::string_body> req) {
    req.version(11);
    req.set(http::field::host, "127.0.0.1");
    req.prepare_payload();
    http::write(socket, req);
    return read();
  }
  http::response<http::string_body> read() {
    http::response<http::string_body> res;
    http::read(socket, buffer, res);
    return res;
  }
  void write_raw(const std::string& bytes) { asio::write(socket, asio::buffer(bytes)); }
  // True when the server closed the connection (EOF or reset).
  bool closed_by_server() {
    char c;
    beast::error_code ec;
    socket.read_some(asio::buffer(&c, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }
};

http::request<http::string_body> get(const std::string& target) {
  return {http::verb::get, target, 11};
}

}  // namespace

TEST_CASE("requests over one kept-alive connection", "[server][listener]") {
  LiveServer s;
  Client c(s.port);
  auto r1 = c.send(get("/healthz"));
  CHECK(r1.result_int() == 200);
  CHECK(r1.keep_alive());
  CHECK(json::parse(r1.body()) == json{{"status", "ok"}});
  auto r2 = c.send(get("/v1/nowhere"));
  CHECK(r2.result_int() == 404);
  CHECK(r2[http::field::content_type] == "application/json");
  auto r3 = c.send(get("/v1/forms"));
  CHECK(r3.result_int() == 401);
}

TEST_CASE("a chunked body with 100-continue is read", "[server][listener]") {
  LiveServer s;
  s.fixture.add_user("officer.bantan", "officer", {"14.03.02"});
  const std::string body =
      json{{"username", "officer.bantan"}, {"password", "secret-password"}}.dump();
  Client c(s.port);
  std::string head =
      "POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: "
      "100-continue\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  c.write_raw(head);
  http::response_parser<http::empty_body> cont;
  http::read_header(c.socket, c.buffer, cont);
  CHECK(cont.get().result() == http::status::continue_);
  std::ostringstream chunks;
  const std::string a = body.substr(0, 10), b = body.substr(10);
  chunks << std::hex << a.size() << "\r\n"
         << a << "\r\n"
         << b.size() << "\r\n"
         << b << "\r\n0\r\n\r\n";
  c.write_raw(chunks.str());
  auto res = c.read();
  CHECK(res.result_int() == 200);
  CHECK(json::parse(res.body()).contains("token"));
}

TEST_CASE("a body over the limit is 413 and the connection closes", "[server][listener]") {
  ServerLimits limits;
  limits.body_limit = 1024;
  LiveServer s(limits);
  SECTION("declared by Content-Length") {
    Client c(s.port);
    http::request<http::string_body> req{http::verb::post, "/v1/sync", 11};
    req.set(http::field::content_type, "application/json");
    req.body() = std::string(4096, ' ');
    auto res = c.send(req);
    CHECK(res.result_int() == 413);
    CHECK(json::parse(res.body())["error"]["code"] == "payload_too_large");
    CHECK(!res.keep_alive());
    CHECK(c.closed_by_server());
  }
  SECTION("in chunks") {
    Client c(s.port);
    c.write_raw(
        "POST /v1/sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: "
        "chunked\r\n\r\n");
    std::string chunk = std::string(600, ' ');
    std::ostringstream out;
    out << std::hex << chunk.size() << "\r\n"
        << chunk << "\r\n"
        << chunk.size() << "\r\n"
        << chunk << "\r\n0\r\n\r\n";
    c.write_raw(out.str());
    auto res = c.read();
    CHECK(res.result_int() == 413);
  }
}

TEST_CASE("an oversized header is 431 and malformed HTTP is 400", "[server][listener]") {
  ServerLimits limits;
  limits.header_limit = 2048;
  LiveServer s(limits);
  {
    Client c(s.port);
    auto req = get("/healthz");
    req.set("X-Padding", std::string(4000, 'p'));
    auto res = c.send(req);
    CHECK(res.result_int() == 431);
    CHECK(c.closed_by_server());
  }
  {
    Client c(s.port);
    c.write_raw("GET /healthz HTTP/1.1\r\nHost x\r\n\r\n");
    auto res = c.read();
    CHECK(res.result_int() == 400);
    CHECK(json::parse(res.body())["error"]["code"] == "bad_request");
  }
}

TEST_CASE("connections beyond the limit are closed at once", "[server][listener]") {
  ServerLimits limits;
  limits.max_connections = 2;
  LiveServer s(limits);
  Client a(s.port), b(s.port);
  CHECK(a.send(get("/healthz")).result_int() == 200);
  CHECK(b.send(get("/healthz")).result_int() == 200);
  Client third(s.port);
  CHECK(third.closed_by_server());
  CHECK(a.send(get("/healthz")).result_int() == 200);
}

TEST_CASE("stop() closes idle connections and returns", "[server][listener]") {
  LiveServer s;
  Client idle(s.port);
  CHECK(idle.send(get("/healthz")).result_int() == 200);
  const auto start = std::chrono::steady_clock::now();
  s.stop();
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  CHECK(idle.closed_by_server());
  beast::error_code ec;
  tcp::socket late(idle.io);
  late.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), s.port), ec);
  CHECK(ec);  // nobody listens any more
}
