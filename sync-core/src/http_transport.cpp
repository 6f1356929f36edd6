// The Boost.Beast HTTP(S) client behind make_http_transport(): one kept-alive
// connection, one deadline for each whole exchange, TLS that verifies the peer and
// its host name. Blocking API; internally the async operations run on a private
// io_context so that tcp_stream deadlines apply. Nothing here logs (tokens pass
// through the headers).
#include "fieldsync/http_transport.hpp"

#include <algorithm>
#include <cassert>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace fieldsync {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kResponseBodyLimit = 64ull * 1024 * 1024;
constexpr std::uint32_t kResponseHeaderLimit = 64 * 1024;
constexpr std::string_view kDefaultUserAgent = "fieldsync-core/0.1";

struct ParsedUrl {
  bool tls = false;
  std::string host;  // without brackets for IPv6 literals
  std::string port;
  std::string prefix;       // "" or "/api" (no trailing slash)
  std::string host_header;  // "host", "host:port", "[::1]:port"
  bool host_is_ip = false;
};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool is_host_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

// scheme "://" host [":" port] [path]; no user info, query or fragment.
Result<ParsedUrl> parse_base_url(std::string_view url) {
  auto fail = [&](std::string_view why) {
    return Error(Errc::invalid_argument,
                 "base URL '" + std::string(url) + "': " + std::string(why));
  };
  ParsedUrl out;
  const auto sep = url.find("://");
  if (sep == std::string_view::npos) return fail("expected http://host:port or https://host:port");
  const std::string scheme = lower(url.substr(0, sep));
  if (scheme == "https") {
    out.tls = true;
  } else if (scheme != "http") {
    return fail("the scheme must be http or https");
  }
  std::string_view rest = url.substr(sep + 3);
  if (rest.find_first_of("?#@ \t\r\n") != std::string_view::npos)
    return fail("user info, query, fragment and spaces are not allowed");
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);

  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return fail("unclosed '[' in the host");
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return fail("unexpected text after the IPv6 address");
      port = after.substr(1);
      if (port.empty()) return fail("empty port");
    }
    error_code ec;
    const auto addr = asio::ip::make_address_v6(out.host, ec);
    if (ec) return fail("not an IPv6 address in brackets");
    (void)addr;
    out.host_is_ip = true;
  } else {
    const auto colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return fail("empty port");
    }
    if (out.host.empty()) return fail("no host");
    if (!std::all_of(out.host.begin(), out.host.end(), is_host_char))
      return fail("the host has characters a host name cannot have");
    error_code ec;
    asio::ip::make_address_v4(out.host, ec);
    out.host_is_ip = !ec;
  }
  if (out.host.empty()) return fail("no host");

  if (port.empty()) {
    out.port = out.tls ? "443" : "80";
  } else {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc{} || end != port.data() + port.size() || value == 0 || value > 65535)
      return fail("the port must be a number 1..65535");
    out.port = std::to_string(value);
  }

  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  out.prefix = std::string(path);

  const bool default_port = out.port == (out.tls ? "443" : "80");
  const std::string host_part = authority.front() == '[' ? "[" + out.host + "]" : out.host;
  out.host_header = default_port ? host_part : host_part + ":" + out.port;
  return out;
}

bool is_certificate_failure(const error_code& ec) {
  if (ec.category() != asio::error::get_ssl_category()) return false;
  return ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_CERTIFICATE_VERIFY_FAILED;
}

class HttpTransport final : public Transport {
 public:
  HttpTransport(ParsedUrl url, std::shared_ptr<ssl::context> tls_context)
      : url_(std::move(url)), tls_context_(std::move(tls_context)), resolver_(ioc_) {}

  ~HttpTransport() override { close(); }

  // A second connection to the same server with the same trust settings. The
  // TLS context is shared: OpenSSL's SSL_CTX may serve connections on several
  // threads once configured, and nothing configures it after this point.
  std::unique_ptr<Transport> another() override {
    return std::make_unique<HttpTransport>(url_, tls_context_);
  }

  Result<HttpResponse> send(const HttpRequest& request,
                            std::chrono::milliseconds timeout) override {
    if (request.target.empty() || request.target.front() != '/')
      return Error(Errc::invalid_argument, "request target must start with '/'");
    if (request.method.empty() || request.method.find_first_of(" \r\n") != std::string::npos)
      return Error(Errc::invalid_argument, "request method is empty or malformed");
    if (request.target.find_first_of(" \r\n") != std::string::npos)
      return Error(Errc::invalid_argument, "request target has spaces or line breaks");
    for (const auto& [name, value] : request.headers) {
      // A header must not smuggle a second header or request.
      if (name.empty() || name.find_first_of(":\r\n") != std::string::npos ||
          value.find_first_of("\r\n") != std::string::npos)
        return Error(Errc::invalid_argument, "malformed request header '" + name + "'");
    }
    const auto deadline = Clock::now() + timeout;
    const auto message = build_request(request);

    bool reused = connected() && !connection_is_stale();
    if (connected() && !reused) close();
    for (int attempt = 0;; ++attempt) {
      if (!connected()) {
        reused = false;
        if (auto connected_ok = connect(deadline); !connected_ok)
          return std::move(connected_ok).error();
      }
      Outcome outcome = exchange(message, deadline, request.method == "HEAD");
      if (outcome.response) {
        if (!outcome.keep_alive) close();
        return std::move(*outcome.response);
      }
      close();
      // A reused connection the server closed while idle: nothing reached the
      // server, so one fresh attempt is safe whatever the request.
      if (reused && outcome.bytes_written == 0 && attempt == 0 && Clock::now() < deadline) continue;
      return std::move(*outcome.error);
    }
  }

 private:
  struct Outcome {
    std::optional<HttpResponse> response;
    std::optional<Error> error;
    std::size_t bytes_written = 0;
    bool keep_alive = false;
  };

  bool connected() const { return plain_ != nullptr || tls_ != nullptr; }

  beast::tcp_stream& lowest() { return tls_ ? beast::get_lowest_layer(*tls_) : *plain_; }

  void close() {
    if (!connected()) return;
    error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    lowest().socket().close(ignored);
    tls_.reset();
    plain_.reset();
    buffer_.clear();
    // Drain completion handlers of cancelled operations before the next exchange.
    ioc_.restart();
    ioc_.poll();
  }

  // An idle kept-alive connection is usable only when nothing is waiting to be read
  // on it: an end of stream, a reset, a TLS close_notify or stray bytes all mean the
  // server closed it or broke it.
  bool connection_is_stale() {
    if (buffer_.size() != 0) return true;
    auto& socket = lowest().socket();
    error_code ec;
    socket.non_blocking(true, ec);
    if (ec) return true;
    char byte = 0;
    socket.receive(asio::buffer(&byte, 1), tcp::socket::message_peek, ec);
    error_code restore;
    socket.non_blocking(false, restore);
    return ec != asio::error::would_block || restore;
  }

  // Runs the io_context until `done`, or until `deadline`; then cancels through
  // `cancel` and drains. Returns false when the deadline passed. (For the
  // resolver, which tcp_stream's deadline does not cover.)
  template <class Cancel>
  bool run_until(const bool& done, Clock::time_point deadline, Cancel&& cancel) {
    ioc_.restart();
    while (!done && Clock::now() < deadline) {
      ioc_.run_one_until(deadline);
    }
    if (done) return true;
    cancel();
    run(done);
    return false;
  }

  // Runs the io_context until the operation started just before sets `done`.
  // Every operation's handler runs (on completion, error or tcp_stream deadline),
  // so this ends; the stop on an empty io_context only guards against a bug.
  void run(const bool& done) {
    ioc_.restart();
    while (!done) {
      if (ioc_.run_one() == 0) break;
    }
    assert(done);
  }

  Error stream_error(const error_code& ec, std::string_view step) {
    const std::string where = std::string(step) + " " + url_.host_header;
    if (ec == beast::error::timeout || ec == asio::error::timed_out)
      return Error(Errc::timeout, where + ": deadline passed");
    if (ec == asio::error::operation_aborted) return Error(Errc::cancelled, where + ": cancelled");
    if (is_certificate_failure(ec)) {
      std::string why = verify_failure_.empty() ? std::string("certificate verification failed")
                                                : verify_failure_;
      return Error(Errc::tls, where + ": " + why);
    }
    if (ec == http::error::body_limit)
      return Error(Errc::protocol,
                   where + ": response body over " + std::to_string(kResponseBodyLimit) + " bytes");
    if (ec == http::error::header_limit)
      return Error(Errc::protocol, where + ": response header too large");
    if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message)
      return Error(Errc::protocol, where + ": malformed HTTP response: " + ec.message());
    return Error(Errc::network, where + ": " + ec.message());
  }

  Result<void> connect(Clock::time_point deadline) {
    bool done = false;
    error_code resolve_ec;
    tcp::resolver::results_type endpoints;
    resolver_.async_resolve(url_.host, url_.port,
                            [&](const error_code& ec, tcp::resolver::results_type results) {
                              resolve_ec = ec;
                              endpoints = std::move(results);
                              done = true;
                            });
    if (!run_until(done, deadline, [&] { resolver_.cancel(); }))
      return Error(Errc::timeout, "resolve " + url_.host + ": deadline passed");
    if (resolve_ec)
      return Error(Errc::network, "resolve " + url_.host + ": " + resolve_ec.message());

    verify_failure_.clear();
    if (url_.tls) {
      tls_ = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ioc_, *tls_context_);
    } else {
      plain_ = std::make_unique<beast::tcp_stream>(ioc_);
    }
    buffer_.clear();
    lowest().expires_at(deadline);

    done = false;
    error_code ec;
    lowest().async_connect(endpoints, [&](const error_code& e, const tcp::endpoint&) {
      ec = e;
      done = true;
    });
    run(done);
    if (ec) {
      auto err = stream_error(ec, "connect");
      close();
      return err;
    }
    error_code nodelay_ec;
    lowest().socket().set_option(tcp::no_delay(true), nodelay_ec);

    if (url_.tls) {
      if (auto ok = tls_handshake(); !ok) {
        close();
        return std::move(ok).error();
      }
    }
    return {};
  }

  Result<void> tls_handshake() {
    error_code ec;
    if (!url_.host_is_ip) {
      // SNI: the server may host several names behind one address.
      if (SSL_set_tlsext_host_name(tls_->native_handle(), url_.host.c_str()) != 1)
        return Error(Errc::tls, "cannot set the TLS server name " + url_.host);
    }
    tls_->set_verify_mode(ssl::verify_peer, ec);
    if (ec) return Error(Errc::tls, "cannot enable peer verification: " + ec.message());
    tls_->set_verify_callback(
        [this, check = ssl::host_name_verification(url_.host)](bool preverified,
                                                               ssl::verify_context& ctx) {
          const bool ok = check(preverified, ctx);
          if (!ok && verify_failure_.empty()) {
            const int err = X509_STORE_CTX_get_error(ctx.native_handle());
            verify_failure_ = preverified || err == X509_V_OK
                                  ? "the certificate does not match the host name " + url_.host
                                  : std::string("certificate verification failed: ") +
                                        X509_verify_cert_error_string(err);
          }
          return ok;
        },
        ec);
    if (ec) return Error(Errc::tls, "cannot set the verify callback: " + ec.message());

    bool done = false;
    tls_->async_handshake(ssl::stream_base::client, [&](const error_code& e) {
      ec = e;
      done = true;
    });
    run(done);
    if (ec) {
      if (is_certificate_failure(ec) || !verify_failure_.empty()) {
        std::string why =
            verify_failure_.empty() ? "certificate verification failed" : verify_failure_;
        return Error(Errc::tls, "TLS handshake with " + url_.host_header + ": " + why);
      }
      return stream_error(ec, "TLS handshake with");
    }
    return {};
  }

  http::request<http::string_body> build_request(const HttpRequest& request) const {
    http::request<http::string_body> req;
    req.version(11);
    req.method_string(request.method);
    req.target(url_.prefix + request.target);
    req.set(http::field::host, url_.host_header);
    bool has_user_agent = false;
    for (const auto& [name, value] : request.headers) {
      if (beast::iequals(name, "Host") || beast::iequals(name, "Content-Length") ||
          beast::iequals(name, "Transfer-Encoding"))
        continue;  // the transport owns framing
      if (beast::iequals(name, "User-Agent")) has_user_agent = true;
      req.insert(name, value);
    }
    if (!has_user_agent) req.set(http::field::user_agent, kDefaultUserAgent);
    req.body() = request.body;
    req.prepare_payload();
    return req;
  }

  template <class Stream>
  Outcome exchange_on(Stream& stream, const http::request<http::string_body>& message,
                      Clock::time_point deadline, bool head) {
    Outcome out;
    lowest().expires_at(deadline);

    bool done = false;
    error_code ec;
    http::async_write(stream, message, [&](const error_code& e, std::size_t n) {
      ec = e;
      out.bytes_written = n;
      done = true;
    });
    run(done);
    const error_code write_ec = ec;
    if (write_ec == beast::error::timeout) {
      out.error = stream_error(write_ec, "send to");
      return out;
    }
    // When the write failed part-way (a server refusing a large body answers and
    // closes), the answer may still be readable: prefer it to the write error.
    if (write_ec && out.bytes_written == 0) {
      out.error = stream_error(write_ec, "send to");
      return out;
    }

    http::response_parser<http::string_body> parser;
    parser.body_limit(kResponseBodyLimit);
    parser.header_limit(kResponseHeaderLimit);
    if (head) parser.skip(true);
    done = false;
    http::async_read(stream, buffer_, parser, [&](const error_code& e, std::size_t) {
      ec = e;
      done = true;
    });
    run(done);
    if (ec) {
      out.error = stream_error(write_ec ? write_ec : ec, write_ec ? "send to" : "receive from");
      return out;
    }

    auto res = parser.release();
    HttpResponse response;
    response.status = static_cast<int>(res.result_int());
    for (const auto& field : res) {
      response.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    response.body = std::move(res.body());
    out.keep_alive = !write_ec && res.keep_alive() && !res.need_eof();
    out.response = std::move(response);
    return out;
  }

  Outcome exchange(const http::request<http::string_body>& message, Clock::time_point deadline,
                   bool head) {
    if (tls_) return exchange_on(*tls_, message, deadline, head);
    return exchange_on(*plain_, message, deadline, head);
  }

  ParsedUrl url_;
  std::shared_ptr<ssl::context> tls_context_;  // shared with the transports another() made
  asio::io_context ioc_{1};
  tcp::resolver resolver_;
  std::unique_ptr<beast::tcp_stream> plain_;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls_;
  beast::flat_buffer buffer_;
  std::string verify_failure_;  // why the last handshake's verification failed
};

}  // namespace

Result<std::unique_ptr<Transport>> make_http_transport(const HttpTransportOptions& options) {
  auto url = parse_base_url(options.base_url);
  if (!url) return std::move(url).error();
  if (!url->tls && !options.ca_file.empty())
    return Error(Errc::invalid_argument, "ca_file is only used with an https:// base URL");

  std::shared_ptr<ssl::context> context;
  if (url->tls) {
    context = std::make_shared<ssl::context>(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION);
    error_code ec;
    context->set_verify_mode(ssl::verify_peer, ec);
    if (!ec) {
      if (options.ca_file.empty()) {
        context->set_default_verify_paths(ec);
      } else {
        context->load_verify_file(options.ca_file, ec);
      }
    }
    if (ec) {
      return Error(Errc::invalid_argument,
                   "cannot load trusted certificates" +
                       (options.ca_file.empty() ? std::string() : " from " + options.ca_file) +
                       ": " + ec.message());
    }
  }
  return std::unique_ptr<Transport>(new HttpTransport(std::move(*url), std::move(context)));
}

}  // namespace fieldsync
