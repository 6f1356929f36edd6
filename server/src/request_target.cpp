// Request-target parsing with Boost.URL (compiled header-only here: Debian ships
// no libboost_url for 1.81).
#include "request_target.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/src.hpp>
#include <boost/url/url_view.hpp>

namespace fieldsync::server {

std::optional<RequestTarget> parse_request_target(std::string_view target) {
  auto parsed = boost::urls::parse_origin_form(target);
  if (!parsed) return std::nullopt;
  const boost::urls::url_view& u = *parsed;
  RequestTarget out;
  out.path = std::string(u.encoded_path());
  for (auto seg : u.segments()) out.segments.push_back(std::string(seg));
  for (auto param : u.params()) out.query.emplace(std::string(param.key), std::string(param.value));
  return out;
}

}  // namespace fieldsync::server
