// Transport-generic helpers (transport.hpp): header lookup on HTTP responses.
#include "fieldsync/transport.hpp"

#include <algorithm>
#include <cctype>

namespace fieldsync {

std::string HttpResponse::header(std::string_view name) const {
  auto same = [&](const std::string& key) {
    return key.size() == name.size() &&
           std::equal(key.begin(), key.end(), name.begin(), [](char a, char b) {
             return std::tolower(static_cast<unsigned char>(a)) ==
                    std::tolower(static_cast<unsigned char>(b));
           });
  };
  for (const auto& [key, value] : headers)
    if (same(key)) return value;
  return {};
}

}  // namespace fieldsync
