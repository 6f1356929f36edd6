// Test certificates made with the `openssl` command: a CA, a server certificate it
// signs for "localhost" only (so 127.0.0.1 is a wrong host name), and an unrelated
// second CA for wrong-trust tests.
#pragma once

#include <string>

#include "fieldsync/error.hpp"

namespace fieldsync::testing {

struct TlsCerts {
  std::string ca;           // PEM of the CA that signed server_cert
  std::string other_ca;     // PEM of a CA that signed nothing here
  std::string server_cert;  // PEM, subjectAltName DNS:localhost
  std::string server_key;   // PEM, unencrypted
};

// Writes the files into `dir` (which must exist). Errc::io when openssl fails.
Result<TlsCerts> make_tls_certs(const std::string& dir);

}  // namespace fieldsync::testing
