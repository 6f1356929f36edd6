// Makes the test CA and server certificate with the openssl command (no shell).
#include "tls_certs.hpp"

#include <fstream>
#include <vector>

#include "support/server_process.hpp"

namespace fieldsync::testing {
namespace {

constexpr const char* kOpenssl = "/usr/bin/openssl";

Result<void> openssl(std::vector<std::string> args) {
  args.insert(args.begin(), kOpenssl);
  auto r = run_command(args, {}, std::chrono::seconds(60));
  if (!r) return r.error();
  if (r->exit_code != 0) return Error(Errc::io, "openssl " + args[1] + " failed: " + r->err);
  return {};
}

Result<void> make_ca(const std::string& dir, const std::string& name) {
  return openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-keyout", dir + "/" + name + ".key", "-out", dir + "/" + name + ".pem",
                  "-days", "2", "-subj", "/CN=" + name, "-addext",
                  "basicConstraints=critical,CA:TRUE", "-addext",
                  "keyUsage=critical,keyCertSign,cRLSign"});
}

}  // namespace

Result<TlsCerts> make_tls_certs(const std::string& dir) {
  TlsCerts certs{dir + "/ca.pem", dir + "/other-ca.pem", dir + "/server.pem", dir + "/server.key"};
  if (auto ok = make_ca(dir, "ca"); !ok) return ok.error();
  if (auto ok = make_ca(dir, "other-ca"); !ok) return ok.error();
  const std::string ext = dir + "/server.ext";
  {
    std::ofstream out(ext);
    out << "basicConstraints=CA:FALSE\n"
           "keyUsage=critical,digitalSignature,keyEncipherment\n"
           "extendedKeyUsage=serverAuth\n"
           "subjectAltName=DNS:localhost\n";
    if (!out) return Error(Errc::io, "cannot write " + ext);
  }
  if (auto ok = openssl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                         "-nodes", "-keyout", certs.server_key, "-out", dir + "/server.csr",
                         "-subj", "/CN=localhost"});
      !ok)
    return ok.error();
  if (auto ok = openssl({"x509", "-req", "-in", dir + "/server.csr", "-CA", certs.ca, "-CAkey",
                         dir + "/ca.key", "-CAcreateserial", "-out", certs.server_cert, "-days",
                         "2", "-extfile", ext});
      !ok)
    return ok.error();
  return certs;
}

}  // namespace fieldsync::testing
