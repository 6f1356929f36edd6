// Hostile input against the real server (issue #5): a table of requests an
// attacker or a broken client could send (invalid UTF-8, NUL bytes, deep nesting,
// huge numbers and strings, SQL-looking text in every string and id, path
// traversal, duplicate JSON members) and a table of hostile connections
// (slowloris, stalled bodies, bodies over the limit sent slowly, more connections
// than allowed). Each row states its status and error code, or that the
// connection is closed. /healthz answers after every row, and the server's data
// (every record an admin sees, and the CSV export) is byte for byte what it was,
// except for the rows that store values, which are then read back verbatim.
//
// What an HTTP client cannot express (NUL or raw bytes in the request line or a
// header, partial requests, timing) goes over a raw TCP socket; the request is
// still serialised and the answer parsed by Beast.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <sstream>
#include <thread>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include "e2e_fixture.hpp"
#include "fieldsync/hlc.hpp"
#include "fieldsync/ids.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;
namespace beast = boost::beast;
namespace http = beast::http;
using Headers = std::vector<std::pair<std::string, std::string>>;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

// ---------------------------------------------------------------- raw sockets

// One TCP connection to 127.0.0.1:port, blocking sends, reads with a deadline.
class RawConn {
 public:
  explicit RawConn(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawConn() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  bool connected() const { return connected_; }
  // False when the peer is gone (EPIPE, ECONNRESET).
  bool send_all(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // Reads what arrives within `timeout`; true once the peer closed (end of stream
  // or reset). Returns at once when it already had.
  bool wait_closed(milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!closed_) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(std::max<long long>(0, left)));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      char buf[65536];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        received_.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        closed_ = true;
      }
    }
    return true;
  }
  // Reads until `text` has arrived (true) or the peer closed or `timeout` passed.
  bool wait_for(std::string_view text, milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (received_.find(text) == std::string::npos) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (closed_ || left.count() <= 0) return false;
      wait_closed(std::min(left, milliseconds(50)));
    }
    return true;
  }
  const std::string& received() const { return received_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string received_;
};

struct RawAnswer {
  int status = 0;  // 0: no (complete) answer
  std::string body;
};

// Parses the first answer in `bytes` with Beast.
RawAnswer parse_answer(const std::string& bytes) {
  RawAnswer out;
  if (bytes.empty()) return out;
  http::response_parser<http::string_body> parser;
  parser.eager(true);
  parser.body_limit(boost::none);
  beast::error_code ec;
  std::size_t used = 0;
  while (!parser.is_done() && used < bytes.size()) {
    const std::size_t n =
        parser.put(boost::asio::buffer(bytes.data() + used, bytes.size() - used), ec);
    if (ec || n == 0) break;
    used += n;
  }
  if (!parser.is_done()) return out;
  out.status = static_cast<int>(parser.get().result_int());
  out.body = parser.get().body();
  return out;
}

// A request serialised by Beast, which writes what it is given: NUL or raw bytes
// in the target or a header reach the server as they are.
std::string serialise(const std::string& method, const std::string& target, const Headers& headers,
                      const std::string& body, bool close = true) {
  http::request<http::string_body> req;
  req.method_string(method);
  req.target(target);
  req.version(11);
  req.set(http::field::host, "127.0.0.1");
  for (const auto& [name, value] : headers) req.insert(name, value);
  if (close) req.set(http::field::connection, "close");
  req.body() = body;
  if (!body.empty() || method == "POST" || method == "PUT") req.prepare_payload();
  std::ostringstream os;
  os << req;
  return os.str();
}

// ---------------------------------------------------------------- the table

enum class Who { none, officer, admin };

struct Row {
  std::string name;
  std::string method;
  std::string target;
  std::string body;
  Headers headers;
  Who who = Who::officer;
  std::string raw;  // non-empty: these bytes over a raw connection instead
  int status = 0;   // 0: the connection is closed without an answer
  std::string code;
  std::string rejected_code;               // a 200 sync whose one change is rejected with this code
  std::string rejected_field;              // and this field, when given
  std::function<void(const json&)> check;  // more checks on a JSON answer
};

const Headers kJson = {{"Content-Type", "application/json"}};

Row req(std::string name, std::string method, std::string target, std::string body, Who who,
        int status, std::string code) {
  Row r;
  r.name = std::move(name);
  r.method = std::move(method);
  r.target = std::move(target);
  r.body = std::move(body);
  r.headers = kJson;
  r.who = who;
  r.status = status;
  r.code = std::move(code);
  return r;
}
Row get(std::string name, std::string target, Who who, int status, std::string code = {}) {
  Row r = req(std::move(name), "GET", std::move(target), {}, who, status, std::move(code));
  r.headers = {};
  return r;
}
Row raw(std::string name, std::string bytes, int status, std::string code = {}) {
  Row r;
  r.name = std::move(name);
  r.raw = std::move(bytes);
  r.status = status;
  r.code = std::move(code);
  return r;
}
Row with_check(Row r, std::function<void(const json&)> check) {
  r.check = std::move(check);
  return r;
}

std::string nested_arrays(std::size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}
std::string nested_objects(std::size_t depth) {
  std::string s;
  for (std::size_t i = 0; i < depth; ++i) s += "{\"a\":";
  s += "1";
  s += std::string(depth, '}');
  return s;
}

std::string pct(const std::string& s) {
  return boost::urls::encode(s, boost::urls::unreserved_chars);
}

// SQL-looking text, put in every string and id the protocol has.
const std::vector<std::string> kSql = {
    "'; DROP TABLE records;--",
    "\" OR 1=1 --",
    "x' UNION SELECT password_hash FROM users WHERE '1'='1",
    "1; DELETE FROM log; SELECT '",
};

int g_counter = 1000;

json change(const std::string& scope_village) {
  return json{{"id", "bad-device:" + std::to_string(++g_counter)},
              {"record", new_uuid_v7()},
              {"form", kKlaForm},
              {"scope", scope_village},
              {"op", "upsert"},
              {"fields", {{"desa_code", scope_village}, {"period", "2026"}}},
              {"base", json::object()},
              {"hlc", HlcClock().now().to_string()}};
}
json change() {
  return change(village(kKecBengkalis, 77));
}
std::string sync_body(const json& c, const std::string& device = "bad-device") {
  return json{{"device_id", device}, {"changes", json::array({c})}, {"since", 0}}.dump();
}
// A sync whose one change is rejected alone.
Row rejected(std::string name, const json& c, std::string code, std::string field = {}) {
  Row r = req(std::move(name), "POST", "/v1/sync", sync_body(c), Who::officer, 200, {});
  r.rejected_code = std::move(code);
  r.rejected_field = std::move(field);
  return r;
}
Row sync_text(std::string name, std::string body, int status, std::string code) {
  return req(std::move(name), "POST", "/v1/sync", std::move(body), Who::officer, status,
             std::move(code));
}
// The JSON text of a change with `member` replaced by the raw JSON text `text`
// (how a number json cannot hold, or bytes that are not UTF-8, get in).
std::string sync_with_raw_member(const std::string& member, const std::string& text) {
  json c = change();
  c[member] = "@@RAW@@";
  std::string s = sync_body(c);
  s.replace(s.find("\"@@RAW@@\""), 9, text);
  return s;
}
std::string sync_with_raw_field(const std::string& field, const std::string& text) {
  json c = change();
  c["fields"][field] = "@@RAW@@";
  std::string s = sync_body(c);
  s.replace(s.find("\"@@RAW@@\""), 9, text);
  return s;
}

struct Dump {
  std::string records;  // GET /v1/records as an admin, every page
  std::string csv;      // GET /v1/export?form=kla-desa
};

Dump dump(Client& client, const std::string& admin) {
  Dump d;
  for (const auto& [id, record] : client.records(admin)) d.records += record.dump() + "\n";
  auto csv = client.send("GET", "/v1/export?form=kla-desa", {}, admin, {});
  REQUIRE(csv.ok());
  REQUIRE(csv->status == 200);
  d.csv = csv->body;
  return d;
}

void check_healthz(std::uint16_t port) {
  RawConn c(port);
  REQUIRE(c.connected());
  REQUIRE(c.send_all(serialise("GET", "/healthz", {}, {})));
  c.wait_closed(milliseconds(10000));
  CHECK(parse_answer(c.received()).status == 200);
}

void check_error(const json& body, const std::string& code) {
  REQUIRE(body.is_object());
  REQUIRE(body.contains("error"));
  CHECK(body["error"].value("code", "") == code);
  CHECK(body["error"].value("message", "") != "");
}

ServerOptions hostile_options() {
  ServerOptions o = standard_server_options();
  // Wrong passwords go to this user only, so its throttle does not lock out the others.
  o.users.push_back({"target.user", "officer", {kKecBantan}, {}});
  return o;
}

}  // namespace

TEST_CASE("hostile requests get their status and code and change nothing", "[e2e][hostile]") {
  auto server = start_server(hostile_options());
  const std::uint16_t port = server->port();
  TempDir dir("fieldsync-e2e");

  Device seed(dir.file("seed.db"), server->base_url());
  seed.login("officer.bengkalis", server->password("officer.bengkalis"));
  for (int i = 1; i <= 4; ++i) {
    const std::string code = village(kKecBengkalis, i);
    seed.create(code, {{"desa_code", code},
                       {"period", "2026"},
                       {"schools_total", i},
                       {"officer_notes", "catatan " + std::to_string(i)}});
  }
  seed.sync();

  Client client(server->base_url());
  const std::string officer =
      client.login("officer.bengkalis", server->password("officer.bengkalis"), "bad-device");
  const std::string admin = client.login("admin", server->password("admin"), "admin-device");
  const Dump before = dump(client, admin);
  REQUIRE(client.records(admin).size() == 4);

  const std::string admin_pw = server->password("admin");
  auto login_body = [](const std::string& user, const std::string& password) {
    return json{{"username", user}, {"password", password}}.dump();
  };
  auto login = [](std::string name, std::string body, int status, std::string code) {
    return req(std::move(name), "POST", "/v1/login", std::move(body), Who::none, status,
               std::move(code));
  };
  auto bearer = [&](Who who) { return "Bearer " + (who == Who::admin ? admin : officer); };
  auto no_records = [](const json& b) { CHECK(b.at("records").empty()); };

  const std::size_t body_limit = 8u * 1024 * 1024;
  const std::string pad_under(body_limit - 200, 'a');
  const std::string pad_over(body_limit + 1, 'a');

  std::vector<Row> rows;
  auto add = [&rows](Row r) { rows.push_back(std::move(r)); };

  // --- invalid UTF-8: JSON strings are refused whole (strict decoding) ------------
  add(sync_text("invalid UTF-8 in a field value",
                sync_with_raw_field("officer_notes", "\"bad \xff\xfe bytes\""), 400,
                "bad_request"));
  add(sync_text("invalid UTF-8 in a record id (overlong '/')",
                sync_with_raw_member("record", "\"\xc0\xaf\""), 400, "bad_request"));
  add(sync_text("invalid UTF-8 in a form id (truncated sequence)",
                sync_with_raw_member("form", "\"kla-\xe2\x82\""), 400, "bad_request"));
  add(sync_text("invalid UTF-8 in a field name",
                sync_with_raw_member("fields", "{\"\xf8\x88\x80\x80\x80\": 1}"), 400,
                "bad_request"));
  add(sync_text("UTF-8 encoded surrogate in the device id",
                "{\"device_id\": \"d\xed\xa0\x80\", \"changes\": []}", 400, "bad_request"));
  add(sync_text("lone surrogate escape in a value",
                sync_with_raw_field("officer_notes", "\"\\ud800\""), 400, "bad_request"));
  add(login("invalid UTF-8 in a user name", "{\"username\": \"adm\xffin\", \"password\": \"x\"}",
            400, "bad_request"));
  add(req("invalid UTF-8 in a form definition", "PUT", "/v1/forms/utf8",
          "{\"id\": \"utf8\", \"fields\": [{\"name\": \"x\xff\", \"type\": \"integer\"}]}",
          Who::admin, 400, "bad_request"));
  add(raw("raw invalid UTF-8 in the URL",
          serialise("GET", "/v1/records/\xff\xfe", {{"Authorization", bearer(Who::officer)}}, {}),
          400, "bad_request"));
  add(get("percent-encoded invalid UTF-8 as a record id", "/v1/records/%FF%FE", Who::officer, 404,
          "not_found"));
  add(get("percent-encoded overlong UTF-8 as a form id", "/v1/forms/%C0%AF", Who::officer, 404,
          "not_found"));
  add(with_check(get("invalid UTF-8 in records?form=", "/v1/records?form=%FF", Who::admin, 200),
                 no_records));
  add(get("invalid UTF-8 in export?form=", "/v1/export?form=%FF%FE", Who::admin, 404, "not_found"));
  add(get("invalid UTF-8 in reports?form=", "/v1/reports/kla?form=%FF", Who::admin, 404,
          "not_found"));
  add(get("invalid UTF-8 as a path segment", "/v1/%FF", Who::officer, 404, "not_found"));

  // --- NUL bytes -------------------------------------------------------------------
  add(login("NUL in a user name does not truncate it",
            json{{"username", std::string("admin\0evil", 10)}, {"password", admin_pw}}.dump(), 401,
            "unauthorized"));
  add(sync_text(
      "NUL in the device id",
      json{{"device_id", std::string("bad\0device", 10)}, {"changes", json::array()}}.dump(), 400,
      "bad_request"));
  {
    json c = change();
    c["record"] = c["record"].get<std::string>() + std::string(1, '\0');
    add(rejected("NUL after a record id", c, "validation", "record"));
    c = change();
    c["form"] = std::string("kla-desa\0", 9);
    add(rejected("NUL after a form id", c, "unknown_form", "form"));
    c = change();
    c["fields"][std::string("officer_notes\0", 14)] = "x";
    add(rejected("NUL in a field name", c, "validation", std::string("officer_notes\0", 14)));
    c = change();
    c["id"] = c["id"].get<std::string>() + std::string(1, '\0');
    add(rejected("NUL in a change id", c, "validation", "id"));
  }
  add(raw("NUL in a header value",
          serialise("GET", "/healthz", {{"X-Evil", std::string("a\0b", 3)}}, {}), 400,
          "bad_request"));
  add(raw("NUL in a header name",
          serialise("GET", "/healthz", {{std::string("X-E\0vil", 7), "a"}}, {}), 400,
          "bad_request"));
  add(raw("NUL after the bearer token",
          serialise("GET", "/v1/records",
                    {{"Authorization", bearer(Who::officer) + std::string(1, '\0')}}, {}),
          400, "bad_request"));
  add(raw("NUL in the URL", serialise("GET", std::string("/v1/records\0/x", 14), {}, {}), 400,
          "bad_request"));
  add(get("percent-encoded NUL as a record id", "/v1/records/%00", Who::officer, 404, "not_found"));
  add(get("percent-encoded NUL after a form id", "/v1/forms/kla-desa%00", Who::officer, 404,
          "not_found"));
  add(with_check(
      get("percent-encoded NUL in records?form=", "/v1/records?form=kla-desa%00", Who::admin, 200),
      no_records));

  // --- deep nesting ----------------------------------------------------------------
  const std::string deep = nested_arrays(100000);
  add(login("100k '[' in a login body", "{\"username\": " + deep + ", \"password\": \"x\"}", 400,
            "bad_request"));
  add(sync_text("100k '[' in a sync body", "{\"device_id\": \"d\", \"changes\": " + deep + "}", 400,
                "bad_request"));
  add(sync_text("100k '[' in a change's fields", sync_with_raw_member("fields", deep), 400,
                "bad_request"));
  add(sync_text("100k nested objects in a sync body", nested_objects(100000), 400, "bad_request"));
  add(sync_text("100k '[' never closed", std::string(100000, '['), 400, "bad_request"));
  add(req("100k '[' in a form definition", "PUT", "/v1/forms/deep",
          "{\"id\": \"deep\", \"fields\": " + deep + "}", Who::admin, 400, "bad_request"));
  add(req("100k '[' in a bulk resolution", "POST", "/v1/conflicts/resolve-bulk",
          "{\"rule\": " + deep + "}", Who::admin, 400, "bad_request"));
  add(req("100k '[' in a resolution", "POST", "/v1/conflicts/1/resolve", deep, Who::admin, 400,
          "bad_request"));

  // --- huge and odd numbers --------------------------------------------------------
  for (const std::string& n :
       {std::string("1e400"), std::string("-1e400"), std::string("18446744073709551617"),
        std::string("1e308"), std::string("9223372036854775808"), std::string("0.5")})
    add(sync_text("since " + n, "{\"device_id\": \"d\", \"since\": " + n + "}", 400,
                  "bad_request"));
  for (const std::string& n :
       {std::string("NaN"), std::string("Infinity"), std::string("-Infinity"), std::string("0x10"),
        std::string("01"), std::string("1e"), std::string("+1"), std::string(".5")})
    add(sync_text("not a JSON number: since " + n, "{\"device_id\": \"d\", \"since\": " + n + "}",
                  400, "bad_request"));
  add(with_check(sync_text("since -0 is 0", "{\"device_id\": \"d\", \"since\": -0}", 200, {}),
                 [](const json& b) { CHECK(b.at("results").empty()); }));
  add(sync_text("a value 1e400", sync_with_raw_field("schools_total", "1e400"), 400,
                "bad_request"));
  add(sync_text("a value NaN", sync_with_raw_field("schools_total", "NaN"), 400, "bad_request"));
  for (const std::string& n :
       {std::string("18446744073709551617"), std::string("18446744073709551615"),
        std::string("9223372036854775807"), std::string("-9223372036854775808"),
        std::string("-0.0"), std::string("1e-400"), std::string("2.5")}) {
    Row r = sync_text("a value " + n, sync_with_raw_field("schools_total", n), 200, {});
    r.rejected_code = "validation";
    r.rejected_field = "schools_total";
    add(std::move(r));
  }
  {
    Row r = sync_text("form_version 2^64+1",
                      sync_with_raw_member("form_version", "18446744073709551617"), 200, {});
    r.rejected_code = "validation";
    r.rejected_field = "form_version";
    add(std::move(r));
    r = sync_text("base 2^64+1", sync_with_raw_member("base", "{\"\": 18446744073709551617}"), 200,
                  {});
    r.rejected_code = "validation";
    r.rejected_field = "base.";
    add(std::move(r));
  }
  add(get("records?since= past int64", "/v1/records?since=99999999999999999999", Who::officer, 400,
          "bad_request"));
  add(get("records?limit=1e400", "/v1/records?limit=1e400", Who::officer, 400, "bad_request"));
  add(get("a conflict id past int64", "/v1/conflicts/99999999999999999999999", Who::admin, 404,
          "not_found"));
  add(get("forms?version= past int64", "/v1/forms/kla-desa?version=99999999999999999999",
          Who::officer, 400, "bad_request"));
  add(login("a user name 1e400", "{\"username\": 1e400, \"password\": \"x\"}", 400, "bad_request"));

  // --- huge strings: just under and over each limit --------------------------------
  add(login("a user name of 256 bytes (the most login takes)",
            login_body(std::string(256, 'u'), "x"), 401, "unauthorized"));
  add(login("a user name of 257 bytes", login_body(std::string(257, 'u'), "x"), 400,
            "bad_request"));
  add(login("a password of 4096 bytes (the most login takes)",
            login_body("target.user", std::string(4096, 'p')), 401, "unauthorized"));
  add(login("a password of 4097 bytes", login_body("target.user", std::string(4097, 'p')), 400,
            "bad_request"));
  add(login("a password just under the body limit", login_body("target.user", pad_under), 400,
            "bad_request"));
  add(login("a login body over the body limit", login_body("target.user", pad_over), 413,
            "payload_too_large"));
  add(sync_text("a device id of 64 characters",
                json{{"device_id", std::string(64, 'd')}, {"changes", json::array()}}.dump(), 200,
                {}));
  add(sync_text("a device id of 65 characters",
                json{{"device_id", std::string(65, 'd')}, {"changes", json::array()}}.dump(), 400,
                "bad_request"));
  add(sync_text("a device id just under the body limit",
                json{{"device_id", pad_under}, {"changes", json::array()}}.dump(), 400,
                "bad_request"));
  {
    json c = change();
    c["fields"]["officer_notes"] = std::string(2001, 'n');
    add(rejected("a note of 2001 characters (the most is 2000)", c, "validation", "officer_notes"));
    c = change();
    c["fields"]["officer_notes"] = pad_under.substr(0, body_limit - 2000);
    add(rejected("a note just under the body limit", c, "validation", "officer_notes"));
    c = change();
    c["record"] = std::string(100000, 'r');
    add(rejected("a record id of 100000 bytes", c, "validation", "record"));
  }
  add(req("a form definition over the body limit", "PUT", "/v1/forms/big",
          json{{"id", "big"}, {"pad", pad_over}}.dump(), Who::admin, 413, "payload_too_large"));
  add(raw("a header just under the header limit",
          serialise("GET", "/healthz", {{"X-Pad", std::string(15 * 1024, 'h')}}, {}), 200));
  add(raw("a header over the header limit",
          serialise("GET", "/healthz", {{"X-Pad", std::string(17 * 1024, 'h')}}, {}), 431,
          "bad_request"));
  add(get("a long target under the header limit", "/v1/records/" + std::string(10000, 'x'),
          Who::officer, 404, "not_found"));
  add(raw("an overlong target (over the header limit)",
          serialise("GET", "/v1/records/" + std::string(20000, 'x'), {}, {}), 431, "bad_request"));

  // --- SQL-looking text in every string and id --------------------------------------
  for (std::size_t i = 0; i < kSql.size(); ++i) {
    const std::string& s = kSql[i];
    const std::string e = pct(s);
    const std::string tag = " (sql " + std::to_string(i + 1) + ")";
    add(login("sql as the user name" + tag, login_body(s, "x"), 401, "unauthorized"));
    add(login("sql as the password" + tag, login_body("target.user", s), 401, "unauthorized"));
    add(login("sql as the login device id" + tag,
              json{{"username", "officer.bantan"}, {"password", "x"}, {"device_id", s}}.dump(), 400,
              "bad_request"));
    add(sync_text("sql as the sync device id" + tag,
                  json{{"device_id", s}, {"changes", json::array()}}.dump(), 400, "bad_request"));
    add(sync_text("sql as the pull cursor" + tag,
                  json{{"device_id", "bad-device"}, {"since", s}}.dump(), 400, "bad_request"));
    add(sync_text("sql as the pull limit" + tag,
                  json{{"device_id", "bad-device"}, {"limit", s}}.dump(), 400, "bad_request"));
    json c = change();
    c["id"] = s;
    add(rejected("sql as a change id" + tag, c, "validation", "id"));
    c = change();
    c["id"] = "bad-device:" + s;
    add(rejected("sql as a change counter" + tag, c, "validation", "id"));
    c = change();
    c["record"] = s;
    add(rejected("sql as a record id" + tag, c, "validation", "record"));
    c = change();
    c["form"] = s;
    add(rejected("sql as a form id" + tag, c, "unknown_form", "form"));
    c = change();
    c["form_version"] = s;
    add(rejected("sql as a form version" + tag, c, "validation", "form_version"));
    c = change();
    c["scope"] = s;
    // A malformed scope is a malformed member (validation), not a scope out of reach.
    add(rejected("sql as a scope" + tag, c, "validation", "scope"));
    c = change();
    c["fields"][s] = "x";
    add(rejected("sql as a field name" + tag, c, "validation", s));
    c = change();
    c["op"] = s;
    add(rejected("sql as the op" + tag, c, "validation", "op"));
    c = change();
    c["hlc"] = s;
    add(rejected("sql as the hlc" + tag, c, "validation", "hlc"));
    c = change();
    c["fields"]["schools_total"] = s;
    add(rejected("sql as an integer value" + tag, c, "validation", "schools_total"));
    add(with_check(get("sql in records?form=" + tag, "/v1/records?form=" + e, Who::admin, 200),
                   no_records));
    add(get("sql in records?scope=" + tag, "/v1/records?scope=" + e, Who::admin, 400,
            "bad_request"));
    add(get("sql in records?since=" + tag, "/v1/records?since=" + e, Who::admin, 400,
            "bad_request"));
    add(get("sql in export?form=" + tag, "/v1/export?form=" + e, Who::admin, 404, "not_found"));
    add(get("sql in export?scope=" + tag, "/v1/export?form=kla-desa&scope=" + e, Who::admin, 400,
            "bad_request"));
    add(get("sql in reports?form=" + tag, "/v1/reports/kla?form=" + e, Who::admin, 404,
            "not_found"));
    add(get("sql in reports?scope=" + tag, "/v1/reports/kla?scope=" + e, Who::admin, 400,
            "bad_request"));
    add(with_check(get("sql in conflicts?record=" + tag, "/v1/conflicts?record=" + e + "&form=" + e,
                       Who::admin, 200),
                   [](const json& b) { CHECK(b.at("conflicts").empty()); }));
    add(with_check(get("sql in quarantine?device=" + tag,
                       "/v1/quarantine?device=" + e + "&user=" + e, Who::admin, 200),
                   [](const json& b) { CHECK(b.at("rejected").empty()); }));
    add(get("sql as a record in the path" + tag, "/v1/records/" + e, Who::admin, 404, "not_found"));
    add(get("sql as a record's history in the path" + tag, "/v1/records/" + e + "/history",
            Who::admin, 404, "not_found"));
    add(get("sql as a form in the path" + tag, "/v1/forms/" + e, Who::officer, 404, "not_found"));
    add(req("sql as a form to publish" + tag, "PUT", "/v1/forms/" + e,
            json{{"id", s}, {"fields", json::array({{{"name", "x"}, {"type", "integer"}}})}}.dump(),
            Who::admin, 400, "validation"));
    add(get("sql as a conflict in the path" + tag, "/v1/conflicts/" + e, Who::admin, 404,
            "not_found"));
    add(req("sql as a conflict to resolve" + tag, "POST", "/v1/conflicts/" + e + "/resolve",
            json{{"keep", s}}.dump(), Who::admin, 404, "not_found"));
    add(req("sql as a bulk rule" + tag, "POST", "/v1/conflicts/resolve-bulk",
            json{{"rule", s}}.dump(), Who::admin, 400, "validation"));
    add(get("sql as a path segment" + tag, "/v1/" + e, Who::officer, 404, "not_found"));
  }

  // --- path traversal --------------------------------------------------------------
  for (const std::string& t :
       {std::string("/v1/../v1/records"), std::string("/v1/./records"),
        std::string("/v1/forms/..%2F..%2Fetc%2Fpasswd"), std::string("/v1/forms/../../etc/passwd"),
        std::string("/v1/forms/%2e%2e%2f%2e%2e%2fetc%2fpasswd"), std::string("/v1%2Frecords"),
        std::string("/v1/records%2F..%2Fforms"), std::string("/v1/forms/%252e%252e%252fetc"),
        std::string("//v1/records"), std::string("/v1/records/"),
        std::string("/healthz/../v1/records"), std::string("/v1/forms/..%5C..%5Cetc%5Cpasswd"),
        std::string("/v1/records/%2e%2e")})
    add(get("traversal " + t, t, Who::admin, 404, "not_found"));
  add(raw("an absolute-form target",
          serialise("GET", "http://evil.example/v1/records",
                    {{"Authorization", bearer(Who::admin)}}, {}),
          400, "bad_request"));
  add(raw("an asterisk-form target", serialise("GET", "*", {}, {}), 400, "bad_request"));
  add(raw("a backslash traversal", serialise("GET", "/v1/forms/..\\..\\etc\\passwd", {}, {}), 400,
          "bad_request"));

  // --- request framing an HTTP client would not send -------------------------------
  const std::string head =
      "POST /v1/sync HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + bearer(Who::officer) +
      "\r\nContent-Type: application/json\r\nConnection: close\r\n";
  const std::string empty_sync = R"({"device_id": "d"})";
  add(raw("two different Content-Length headers",
          head + "Content-Length: 18\r\nContent-Length: 5\r\n\r\n" + empty_sync, 400,
          "bad_request"));
  add(raw("Content-Length and chunked together",
          head + "Content-Length: 18\r\nTransfer-Encoding: chunked\r\n\r\n12\r\n" + empty_sync +
              "\r\n0\r\n\r\n",
          400, "bad_request"));
  add(raw("a negative Content-Length", head + "Content-Length: -18\r\n\r\n" + empty_sync, 400,
          "bad_request"));
  add(raw("a Content-Length past 64 bits",
          head + "Content-Length: 99999999999999999999999\r\n\r\n" + empty_sync, 400,
          "bad_request"));
  add(raw("a malformed chunk size", head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n", 400,
          "bad_request"));
  add(raw("a control character in the method", "G\x01T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400,
          "bad_request"));
  add(raw("an unknown HTTP version", "GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400,
          "bad_request"));
  add(raw("a header line without a colon",
          "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, "bad_request"));
  // (Beast will not serialise a field this long: written out.)
  add(raw("a token of 100 KiB",
          "GET /v1/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
              std::string(100000, 't') + "\r\n\r\n",
          431, "bad_request"));
  add(get("a token of 200 characters", "/v1/records", Who::none, 401, "unauthorized"));
  rows.back().headers = {{"Authorization", "Bearer " + std::string(200, 't')}};
  add(with_check(get(
                     "a thousand query parameters",
                     "/v1/records?" +
                         [] {
                           std::string q;
                           for (int i = 0; i < 1000; ++i) q += "p" + std::to_string(i) + "=1&";
                           return q;
                         }(),
                     Who::admin, 200),
                 [](const json& b) { CHECK(b.at("records").size() == 4); }));

  // --- duplicate JSON members: refused as ambiguous -------------------------------
  add(login("duplicate user name in a login",
            "{\"username\": \"admin\", \"password\": " + json(admin_pw).dump() +
                ", \"username\": \"officer.bantan\"}",
            400, "bad_request"));
  add(sync_text("duplicate since in a sync",
                "{\"device_id\": \"d\", \"since\": 0, \"since\": 999999}", 400, "bad_request"));
  add(sync_text("duplicate device id in a sync",
                "{\"device_id\": \"bad-device\", \"device_id\": \"other\", \"changes\": []}", 400,
                "bad_request"));
  add(sync_text("duplicate field in a change",
                sync_with_raw_member("fields",
                                     "{\"desa_code\": \"14.03.01.2077\", \"period\": \"2026\", "
                                     "\"schools_total\": 1, \"schools_total\": 2}"),
                400, "bad_request"));
  add(sync_text("duplicate record id in a change",
                sync_with_raw_member("op", "\"upsert\", \"record\": \"" + new_uuid_v7() + "\""),
                400, "bad_request"));
  add(req("duplicate id in a form definition", "PUT", "/v1/forms/dup",
          R"({"id": "dup", "id": "dup2", "fields": [{"name": "x", "type": "integer"}]})",
          Who::admin, 400, "bad_request"));
  add(req("duplicate rule in a bulk resolution", "POST", "/v1/conflicts/resolve-bulk",
          R"({"rule": "server", "rule": "latest_received", "dry_run": true})", Who::admin, 400,
          "bad_request"));

  for (const auto& r : rows) {
    INFO("row: " << r.name);
    RawAnswer answer;
    if (!r.raw.empty()) {
      RawConn c(port);
      REQUIRE(c.connected());
      c.send_all(r.raw);  // the server may close before it has read everything
      c.wait_closed(milliseconds(20000));
      answer = parse_answer(c.received());
    } else {
      Client one(server->base_url());
      Headers headers = r.headers;
      if (r.who != Who::none) headers.emplace_back("Authorization", bearer(r.who));
      auto res = one.send(r.method, r.target, r.body, {}, headers);
      if (!res) {
        FAIL_CHECK("no answer: " << res.error().to_string());
        continue;
      }
      answer = RawAnswer{res->status, res->body};
    }
    INFO("answer " << answer.status << " " << answer.body.substr(0, 300));
    CHECK(answer.status == r.status);
    if (answer.status != 0) {
      json body = json::parse(answer.body, nullptr, false);
      REQUIRE(body.is_object());
      if (!r.code.empty()) check_error(body, r.code);
      if (!r.rejected_code.empty()) {
        auto decoded = SyncResponse::from_json(body);
        REQUIRE(decoded.ok());
        REQUIRE(decoded->results.size() == 1);
        CHECK(decoded->results[0].status == "rejected");
        REQUIRE(decoded->results[0].error.has_value());
        CHECK(decoded->results[0].error->code == r.rejected_code);
        if (!r.rejected_field.empty()) CHECK(decoded->results[0].error->field == r.rejected_field);
      }
      if (r.check && answer.status == r.status) r.check(body);
    }
    check_healthz(port);
  }

  // Nothing above changed the data, byte for byte.
  const Dump after = dump(client, admin);
  CHECK(after.records == before.records);
  CHECK(after.csv == before.csv);

  // --- values that are accepted are stored verbatim --------------------------------
  struct Stored {
    std::string name;
    json fields;                 // besides desa_code and period, unless given
    json base = json::object();  // the change's base
  };
  std::vector<Stored> stored;
  for (std::size_t i = 0; i < kSql.size(); ++i)
    stored.push_back({"sql as a note and a regulation ref (sql " + std::to_string(i + 1) + ")",
                      {{"officer_notes", kSql[i]}, {"kla_regulation_ref", kSql[i]}}});
  // base names versions the device saw; one naming a field the form lacks is
  // ignored (it sets nothing), so the change applies.
  for (std::size_t i = 0; i < kSql.size(); ++i)
    stored.push_back({"sql as a base key (sql " + std::to_string(i + 1) + ")",
                      {{"schools_total", 7}},
                      {{kSql[i], 1}}});
  stored.push_back({"sql as the key fields", {{"desa_code", "'; DROP TAB--"}, {"period", "';--"}}});
  stored.push_back({"Bobby Tables", {{"officer_notes", "Robert'); DROP TABLE Students;--"}}});
  stored.push_back({"NUL inside a note", {{"officer_notes", std::string("before\0after", 12)}}});
  stored.push_back({"-0 as an integer", {{"schools_total", json::parse("-0")}}});
  stored.push_back({"a note of exactly 2000 characters (4000 bytes)", {{"officer_notes", [] {
                                                                          std::string s;
                                                                          for (int i = 0; i < 2000;
                                                                               ++i)
                                                                            s += "\xc3\xa9";
                                                                          return s;
                                                                        }()}}});
  stored.push_back({"a regulation ref of exactly 200 characters",
                    {{"kla_regulation_ref", std::string(200, 'R')}}});
  stored.push_back({"quotes, backslashes and percent signs",
                    {{"officer_notes", "\\\" %s %n %x \\\\ \\u0000 ${jndi:ldap://x} <script>"}}});

  std::map<std::string, json> new_records;  // id -> the fields sent
  int n = 40;
  for (const auto& s : stored) {
    INFO("stored: " << s.name);
    const std::string v = village(kKecBengkalis, ++n);
    json c = change(v);
    for (const auto& [k, val] : s.fields.items()) c["fields"][k] = val;
    c["base"] = s.base;
    Client one(server->base_url());
    auto res = one.send("POST", "/v1/sync", sync_body(c), officer);
    REQUIRE(res.ok());
    INFO(res->body.substr(0, 300));
    REQUIRE(res->status == 200);
    auto decoded = SyncResponse::from_json(json::parse(res->body));
    REQUIRE(decoded.ok());
    REQUIRE(decoded->results.size() == 1);
    CHECK(decoded->results[0].status == "applied");
    const std::string id = c["record"].get<std::string>();
    new_records[id] = c["fields"];
    json back = one.get("/v1/records/" + id, officer);
    for (const auto& [k, val] : c["fields"].items()) {
      INFO("field " << k);
      CHECK(back["fields"][k]["value"] == val);
      CHECK(back["fields"][k]["value"].dump() == val.dump());
    }
    check_healthz(port);
  }

  // The old records are byte for byte what they were; the new ones hold what was sent.
  const auto records_now = client.records(admin);
  std::string old_records;
  for (const auto& [id, record] : records_now) {
    if (new_records.count(id)) {
      for (const auto& [k, val] : new_records[id].items())
        CHECK(record["fields"][k]["value"] == val);
    } else {
      old_records += record.dump() + "\n";
    }
  }
  CHECK(records_now.size() == 4 + new_records.size());
  CHECK(old_records == before.records);
  // And in the export: the old rows unchanged, one more row per stored record.
  auto csv = client.send("GET", "/v1/export?form=kla-desa", {}, admin, {});
  REQUIRE(csv.ok());
  REQUIRE(csv->status == 200);
  std::string old_rows;
  std::size_t new_rows = 0;
  std::istringstream lines(csv->body);
  for (std::string line; std::getline(lines, line);) {
    const std::string id = line.substr(0, line.find(','));
    if (new_records.count(id))
      ++new_rows;
    else
      old_rows += line + "\n";
  }
  CHECK(new_rows == new_records.size());
  std::string before_rows;
  std::istringstream before_lines(before.csv);
  for (std::string line; std::getline(before_lines, line);) before_rows += line + "\n";
  CHECK(old_rows == before_rows);
  for (const auto& [id, fields] : new_records) {
    for (const auto& [k, val] : fields.items())
      if (val.is_string() && val.get<std::string>().find_first_of(",\"\r\n") == std::string::npos)
        CHECK(csv->body.find(val.get<std::string>()) != std::string::npos);
  }

  // A device pulling from scratch sees the same data as the server.
  Device fresh(dir.file("fresh.db"), server->base_url());
  fresh.login("officer.bengkalis2", server->password("officer.bengkalis2"));
  fresh.sync();
  check_device_matches_server(fresh, records_now);
  SUCCEED("rows: " << rows.size() << " requests + " << stored.size() << " stored values");
}

namespace {

// A connection-level row: `run` drives the socket and checks what it states.
struct ConnRow {
  std::string name;
  std::string expect;
  std::function<void()> run;
};

constexpr int kHeaderTimeoutS = 3;
constexpr int kBodyTimeoutS = 2;
constexpr std::size_t kSmallBodyLimit = 64 * 1024;
constexpr std::size_t kMaxConnections = 8;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

TEST_CASE("hostile connections are cut off and the server keeps serving", "[e2e][hostile]") {
  ServerOptions options = hostile_options();
  options.serve_args = {"--header-timeout",
                        std::to_string(kHeaderTimeoutS),
                        "--body-timeout",
                        std::to_string(kBodyTimeoutS),
                        "--body-limit",
                        std::to_string(kSmallBodyLimit),
                        "--max-connections",
                        std::to_string(kMaxConnections),
                        "--quiet"};
  auto server = start_server(options);
  const std::uint16_t port = server->port();
  TempDir dir("fieldsync-e2e");

  std::string admin, officer;
  Dump before;
  {
    Device seed(dir.file("seed.db"), server->base_url());
    seed.login("officer.bengkalis", server->password("officer.bengkalis"));
    const std::string code = village(kKecBengkalis, 1);
    seed.create(code, {{"desa_code", code}, {"period", "2026"}, {"schools_total", 3}});
    seed.sync();
    Client client(server->base_url());
    admin = client.login("admin", server->password("admin"), "admin-device");
    officer = client.login("officer.bengkalis", server->password("officer.bengkalis"), "dev-1");
    before = dump(client, admin);
  }  // every connection of the setup is closed here
  const std::string auth = "Bearer " + officer;

  // The start of a POST /v1/sync whose body follows separately.
  auto post_head = [&](const std::string& framing) {
    return "POST /v1/sync HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + auth +
           "\r\nContent-Type: application/json\r\n" + framing + "\r\n";
  };

  const std::vector<ConnRow> rows = {
      {"slowloris: a header byte a second", "connection closed by the header timeout, no answer",
       [&] {
         RawConn c(port);
         REQUIRE(c.connected());
         const auto start = Clock::now();
         const std::string header =
             "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(30, 'a') + "\r\n\r\n";
         std::size_t sent = 0;
         while (sent < header.size() && !c.wait_closed(milliseconds(1000)))
           if (c.send_all(header.substr(sent, 1))) ++sent;
         CHECK(c.wait_closed(milliseconds(1000)));
         CHECK(sent < header.size());  // cut off before the header was complete
         CHECK(c.received().empty());
         CHECK(seconds_since(start) >= kHeaderTimeoutS - 0.5);
         CHECK(seconds_since(start) < kHeaderTimeoutS + 5);
       }},
      {"a connection that sends nothing", "connection closed by the header timeout",
       [&] {
         RawConn c(port);
         REQUIRE(c.connected());
         const auto start = Clock::now();
         CHECK(c.wait_closed(milliseconds((kHeaderTimeoutS + 5) * 1000)));
         CHECK(c.received().empty());
         CHECK(seconds_since(start) >= kHeaderTimeoutS - 0.5);
       }},
      {"an idle keep-alive connection after an answer",
       "200, then connection closed by the header timeout",
       [&] {
         RawConn c(port);
         REQUIRE(c.connected());
         REQUIRE(c.send_all(serialise("GET", "/healthz", {}, {}, false)));
         CHECK(c.wait_closed(milliseconds((kHeaderTimeoutS + 5) * 1000)));
         CHECK(parse_answer(c.received()).status == 200);
       }},
      {"a body that stalls half way", "connection closed by the body timeout, no answer",
       [&] {
         RawConn c(port);
         REQUIRE(c.connected());
         REQUIRE(c.send_all(post_head("Content-Length: 100\r\n") + "{\"device_id\": "));
         const auto start = Clock::now();
         CHECK(c.wait_closed(milliseconds((kBodyTimeoutS + 5) * 1000)));
         CHECK(c.received().empty());
         CHECK(seconds_since(start) >= kBodyTimeoutS - 0.5);
       }},
      {"Content-Length over the limit, body sent slowly",
       "413 payload_too_large at once, before the body",
       [&] {
         RawConn c(port);
         REQUIRE(c.connected());
         REQUIRE(c.send_all(post_head("Content-Length: 1073741824\r\n") + "{\"pad\": \""));
         // The answer comes without waiting for the body (or for the body timeout).
         const auto start = Clock::now();
         CHECK(c.wait_closed(milliseconds(kBodyTimeoutS * 1000 - 500)));
         CHECK(seconds_since(start) < kBodyTimeoutS);
         RawAnswer a = parse_answer(c.received());
         CHECK(a.status == 413);
         if (a.status == 413) check_error(json::parse(a.body, nullptr, false), "payload_too_large");
       }},
      {"Content-Length over the limit with Expect: 100-continue",
       "413 payload_too_large, no 100 Continue",
       [&] {
         RawConn c(port);
         REQUIRE(c.connected());
         REQUIRE(c.send_all(post_head("Content-Length: 1073741824\r\nExpect: 100-continue\r\n")));
         CHECK(c.wait_closed(milliseconds(kBodyTimeoutS * 1000 - 500)));
         RawAnswer a = parse_answer(c.received());
         CHECK(a.status == 413);
       }},
      {"a chunked body over the limit, sent slowly",
       "413 payload_too_large or connection closed, before all of it was sent",
       [&] {
         RawConn c(port);
         REQUIRE(c.connected());
         REQUIRE(c.send_all(post_head("Transfer-Encoding: chunked\r\n") + "9\r\n{\"pad\": \"\r\n"));
         const std::string chunk = "2000\r\n" + std::string(0x2000, 'a') + "\r\n";
         const std::size_t chunks = 4 * kSmallBodyLimit / 0x2000;  // four times the limit
         std::size_t sent = 0;
         while (sent < chunks && !c.wait_closed(milliseconds(50)))
           if (c.send_all(chunk)) ++sent;
         CHECK(c.wait_closed(milliseconds(5000)));
         CHECK(sent < chunks);
         INFO("chunks sent: " << sent);
         RawAnswer a = parse_answer(c.received());
         CHECK((a.status == 413 || a.status == 0));
         if (a.status == 413) check_error(json::parse(a.body, nullptr, false), "payload_too_large");
       }},
      {"a chunk size beyond 64 bits", "413 payload_too_large or 400 bad_request, closed",
       [&] {
         RawConn c(port);
         REQUIRE(c.connected());
         REQUIRE(
             c.send_all(post_head("Transfer-Encoding: chunked\r\n") + "fffffffffffffffffff\r\n{}"));
         CHECK(c.wait_closed(milliseconds(5000)));
         RawAnswer a = parse_answer(c.received());
         CHECK((a.status == 413 || a.status == 400));
       }},
      {"more connections than --max-connections",
       "the extra ones closed at once; the others still answer; /healthz after they close",
       [&] {
         std::vector<std::unique_ptr<RawConn>> conns;
         const std::size_t total = kMaxConnections + 4;
         for (std::size_t i = 0; i < total; ++i) {
           conns.push_back(std::make_unique<RawConn>(port));
           REQUIRE(conns.back()->connected());
         }
         // The refused ones are closed at once; the held ones only by the header timeout.
         auto count_closed = [&] {
           std::size_t n = 0;
           for (auto& c : conns) n += c->wait_closed(milliseconds(0)) ? 1 : 0;
           return n;
         };
         const auto deadline = Clock::now() + std::chrono::seconds(2);
         while (count_closed() < total - kMaxConnections && Clock::now() < deadline)
           conns.front()->wait_closed(milliseconds(20));
         CHECK(count_closed() == total - kMaxConnections);
         RawConn* held = nullptr;
         for (auto& c : conns) {
           if (c->wait_closed(milliseconds(0)))
             CHECK(c->received().empty());
           else if (!held)
             held = c.get();
         }
         // A held connection still gets its answer.
         REQUIRE(held);
         REQUIRE(held->send_all(serialise("GET", "/healthz", {}, {})));
         CHECK(held->wait_closed(milliseconds(5000)));
         CHECK(parse_answer(held->received()).status == 200);
         conns.clear();
         // Once they are gone, new connections are served again.
         int status = 0;
         const auto until = Clock::now() + std::chrono::seconds(10);
         while (status != 200 && Clock::now() < until) {
           RawConn c(port);
           if (!c.connected() || !c.send_all(serialise("GET", "/healthz", {}, {}))) continue;
           c.wait_closed(milliseconds(2000));
           status = parse_answer(c.received()).status;
         }
         CHECK(status == 200);
       }},
  };

  for (const auto& row : rows) {
    INFO("row: " << row.name << " -> " << row.expect);
    row.run();
    check_healthz(port);
  }

  Client client(server->base_url());
  const Dump after = dump(client, admin);
  CHECK(after.records == before.records);
  CHECK(after.csv == before.csv);
  SUCCEED("connection rows: " << rows.size());
}

TEST_CASE("request bodies held at once are bounded: 429 with Retry-After, others still served",
          "[e2e][hostile][limits]") {
  ServerOptions options = hostile_options();
  options.serve_args = {"--body-memory", "100000", "--quiet"};
  auto server = start_server(options);
  const std::uint16_t port = server->port();
  auto post_head = [](std::size_t length, const std::string& extra = {}) {
    return "POST /v1/sync HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "Content-Length: " +
           std::to_string(length) + "\r\n" + extra + "\r\n";
  };

  // A declares 90,000 bytes and waits for 100 Continue: its body is now reserved.
  RawConn a(port);
  REQUIRE(a.connected());
  REQUIRE(a.send_all(post_head(90000, "Expect: 100-continue\r\n")));
  REQUIRE(a.wait_for("100 Continue", milliseconds(10000)));

  // B's 20,000 more would pass the budget: 429, Retry-After, closed, body unread.
  RawConn b(port);
  REQUIRE(b.connected());
  REQUIRE(b.send_all(post_head(20000)));
  CHECK(b.wait_closed(milliseconds(10000)));
  RawAnswer busy = parse_answer(b.received());
  CHECK(busy.status == 429);
  if (busy.status == 429) check_error(json::parse(busy.body, nullptr, false), "too_many_requests");
  CHECK(b.received().find("Retry-After: 2\r\n") != std::string::npos);

  // Requests without a body are not held back.
  RawConn c(port);
  REQUIRE(c.connected());
  REQUIRE(c.send_all(serialise("GET", "/healthz", {}, {})));
  CHECK(c.wait_closed(milliseconds(10000)));
  CHECK(parse_answer(c.received()).status == 200);

  // A sends its body and is answered (no token: 401); its reservation is given
  // back, and B's retry gets past the budget to the same check.
  // The first complete answer after `from` in what `conn` received.
  auto answer_after = [](RawConn& conn, const std::string& from) {
    RawAnswer got;
    for (int i = 0; i < 200 && got.status == 0; ++i) {
      conn.wait_for("\r\n\r\n", milliseconds(50));
      const std::size_t at = conn.received().find(from);
      if (at != std::string::npos) got = parse_answer(conn.received().substr(at));
      if (got.status == 0) conn.wait_closed(milliseconds(50));
    }
    return got;
  };
  REQUIRE(a.send_all(std::string(90000, ' ')));
  CHECK(answer_after(a, "HTTP/1.1 4").status == 401);
  RawConn retry(port);
  REQUIRE(retry.connected());
  REQUIRE(retry.send_all(post_head(20000) + std::string(20000, ' ')));
  CHECK(answer_after(retry, "HTTP/1.1").status == 401);

  // One body larger than the budget is served when nothing else is held.
  RawConn big(port);
  REQUIRE(big.connected());
  REQUIRE(big.send_all(post_head(150000) + std::string(150000, ' ')));
  CHECK(answer_after(big, "HTTP/1.1").status == 401);

  // The refusal is counted where operators look.
  RawConn m(port);
  REQUIRE(m.connected());
  REQUIRE(m.send_all(serialise("GET", "/metrics", {}, {})));
  CHECK(m.wait_closed(milliseconds(10000)));
  const RawAnswer metrics = parse_answer(m.received());
  CHECK(metrics.status == 200);
  INFO(metrics.body);
  CHECK(metrics.body.find("fieldsync_http_requests_total{path=\"refused\",status=\"429\"} 1\n") !=
        std::string::npos);
}
