// HTTPS end to end: the real server started with a certificate from a test CA made
// by the openssl command; a device syncs over it; an untrusted CA and a wrong host
// name fail with Errc::tls (not transient), before any request is sent.
#include <catch2/catch.hpp>

#include "e2e_fixture.hpp"
#include "tls_certs.hpp"

using namespace fieldsync;
using namespace fieldsync::testing;

TEST_CASE("HTTPS to the real server: good path, untrusted CA, wrong host name", "[e2e][tls]") {
  TempDir certs_dir("fieldsync-certs");
  auto certs = make_tls_certs(certs_dir.path());
  REQUIRE(certs.ok());
  ServerOptions options = standard_server_options();
  options.serve_args = {"--tls-cert", certs->server_cert, "--tls-key", certs->server_key};
  options.tls = true;
  auto server = start_server(options);
  const std::string port = std::to_string(server->port());
  const std::string good_url = "https://localhost:" + port;

  SECTION("a device logs in and syncs over TLS") {
    TempDir dir("fieldsync-e2e");
    StoreOptions so;
    so.path = dir.file("tls.db");
    auto store = Store::open(so);
    REQUIRE(store.ok());
    auto transport = make_http_transport(HttpTransportOptions{good_url, certs->ca});
    REQUIRE(transport.ok());
    auto login = fieldsync::login(**store, **transport, "officer.bengkalis",
                                  server->password("officer.bengkalis"));
    REQUIRE(login.ok());
    Client client(good_url, certs->ca);
    const std::string token = login->token;
    const json forms = client.get("/v1/forms", token);
    for (const auto& f : forms.at("forms")) {
      auto form = Form::parse(f);
      REQUIRE(form.ok());
      REQUIRE((*store)->import_form(*form).ok());
    }
    PutRequest put;
    put.form = kKlaForm;
    put.scope = village(kKecBengkalis, 1);
    put.fields = {{"desa_code", put.scope}, {"period", "2026"}, {"births", 12}};
    auto id = (*store)->put(put);
    REQUIRE(id.ok());
    auto progress = fieldsync::sync(**store, **transport);
    REQUIRE(progress.ok());
    CHECK(progress->applied == 1);
    const auto records = client.records(token);
    REQUIRE(records.count(*id) == 1);
    CHECK(server_value(records.at(*id), "births") == 12);
  }
  SECTION("a server certificate from a CA the device does not trust") {
    auto transport = make_http_transport(HttpTransportOptions{good_url, certs->other_ca});
    REQUIRE(transport.ok());
    auto res = (*transport)->send(HttpRequest{"GET", "/healthz", {}, {}}, std::chrono::seconds(10));
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().code == Errc::tls);
    CHECK_FALSE(errc_is_transient(res.error().code));
  }
  SECTION("a host name the certificate does not name") {
    auto transport =
        make_http_transport(HttpTransportOptions{"https://127.0.0.1:" + port, certs->ca});
    REQUIRE(transport.ok());
    auto res = (*transport)->send(HttpRequest{"GET", "/healthz", {}, {}}, std::chrono::seconds(10));
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().code == Errc::tls);
  }
  SECTION("plain HTTP to the TLS port gets no answer") {
    auto transport = make_http_transport(HttpTransportOptions{"http://localhost:" + port, {}});
    REQUIRE(transport.ok());
    auto res = (*transport)->send(HttpRequest{"GET", "/healthz", {}, {}}, std::chrono::seconds(1));
    if (res.ok()) {
      CHECK(res->status == 400);  // a server may answer plain HTTP with an error
    } else {
      CHECK(res.error().code != Errc::tls);
    }
  }
}
