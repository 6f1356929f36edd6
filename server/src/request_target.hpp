// Splits an HTTP request target ("/v1/forms/kla-desa?version=2") into decoded path
// segments and query parameters. Boost.URL does the parsing; this header keeps it
// out of the router.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fieldsync::server {

struct RequestTarget {
  std::string path;                          // as sent, without the query
  std::vector<std::string> segments;         // percent-decoded; "/" -> {}
  std::map<std::string, std::string> query;  // percent-decoded; the first of repeated keys
};

// nullopt for a target that is not origin-form ("/path?query").
std::optional<RequestTarget> parse_request_target(std::string_view target);

}  // namespace fieldsync::server
