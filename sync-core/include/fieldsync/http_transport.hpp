// The Boost.Beast HTTP(S) client transport (target fieldsync::http). Beast and
// Asio stay inside its .cpp file: including this header needs neither.
#pragma once

#include <memory>
#include <string>

#include "fieldsync/error.hpp"
#include "fieldsync/transport.hpp"

namespace fieldsync {

struct HttpTransportOptions {
  // "http://host:port" or "https://host:port", optionally with a path prefix.
  std::string base_url;
  // HTTPS: a PEM file of trusted CAs; empty = the system's trust store.
  std::string ca_file;
};

// Fails with Errc::invalid_argument for a URL it cannot use.
Result<std::unique_ptr<Transport>> make_http_transport(const HttpTransportOptions& options);

}  // namespace fieldsync
