// RFC 4180 CSV for reports and exports: fields quoted when they hold a comma,
// quote, CR or LF (quotes doubled), CRLF line ends, UTF-8 passed through as is.
// The reader is the exact inverse, for tests and for tools that read exports back.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "fieldsync/error.hpp"

namespace fieldsync::server {

// One CSV field, quoted only when it must be.
std::string csv_field(std::string_view value);
// One row: fields joined by commas, ended by CRLF.
std::string csv_row(const std::vector<std::string>& fields);
// Parses a whole RFC 4180 document (CRLF or LF line ends). Fails on a quote
// inside an unquoted field or an unterminated quoted field.
Result<std::vector<std::vector<std::string>>> parse_csv(std::string_view text);

}  // namespace fieldsync::server
