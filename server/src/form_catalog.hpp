// Publishing form definitions (protocol.md "Forms"): the server assigns the next
// version; a definition equal to the latest creates nothing.
#pragma once

#include <cstdint>
#include <string>

#include "fieldsync/form.hpp"
#include "writer.hpp"

namespace fieldsync::server {

struct PublishedForm {
  std::string id;
  std::int64_t version = 0;
  bool created = false;  // false: equal to the latest version, nothing new
};

// Publishes `definition` (its "version" member is ignored). When `path_id` is not
// empty the definition's id must equal it. Invalid definitions -> Errc::validation
// with `field`; store failures as their errors.
Result<PublishedForm> publish_form(Writer& writer, const json& definition,
                                   const std::string& path_id, const std::string& published_by,
                                   std::int64_t now_ms);

}  // namespace fieldsync::server
