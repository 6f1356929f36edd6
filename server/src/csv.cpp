// RFC 4180 writer and reader (csv.hpp).
#include "csv.hpp"

namespace fieldsync::server {

std::string csv_field(std::string_view value) {
  if (value.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(value);
  std::string out = "\"";
  for (char c : value) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string csv_row(const std::vector<std::string>& fields) {
  std::string out;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i) out += ',';
    out += csv_field(fields[i]);
  }
  out += "\r\n";
  return out;
}

Result<std::vector<std::vector<std::string>>> parse_csv(std::string_view text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  std::size_t i = 0;
  bool at_field_start = true;
  auto end_row = [&] {
    row.push_back(std::move(field));
    field.clear();
    rows.push_back(std::move(row));
    row.clear();
    at_field_start = true;
  };
  while (i < text.size()) {
    char c = text[i];
    if (at_field_start && c == '"') {
      ++i;
      bool closed = false;
      while (i < text.size()) {
        if (text[i] == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          closed = true;
          break;
        }
        field += text[i++];
      }
      if (!closed) return Error(Errc::invalid_argument, "unterminated quoted field");
      at_field_start = false;
      if (i < text.size() && text[i] != ',' && text[i] != '\r' && text[i] != '\n')
        return Error(Errc::invalid_argument, "text after a closing quote");
      continue;
    }
    if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      at_field_start = true;
      ++i;
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      end_row();
      i += 2;
    } else if (c == '\n') {
      end_row();
      ++i;
    } else if (c == '"') {
      return Error(Errc::invalid_argument, "a quote inside an unquoted field");
    } else {
      field += c;
      at_field_start = false;
      ++i;
    }
  }
  if (!field.empty() || !row.empty()) end_row();
  return rows;
}

}  // namespace fieldsync::server
