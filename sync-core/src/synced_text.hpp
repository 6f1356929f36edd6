// The text of records.synced (docs/storage.md, "records"): the server's values
// as last seen, in one of two forms.
//   paired   {"f": [value, version], ...}  any row, any schema
//   compact  {"": version, "f": value, ...} every field at that one version:
//            schema 3, written for a create whose first answer applied it whole
// The compact form is the stored fields text of the change with one member put
// in front, so that answer is written without parsing and pairing every value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace fieldsync::detail {

// A compact object put in the paired form; a paired one is left as it is. False
// (and `synced` unchanged) when its "" member is not a whole number >= 1.
inline bool expand_synced(nlohmann::json& synced) {
  if (!synced.is_object()) return true;
  auto all = synced.find("");
  if (all == synced.end()) return true;
  if (!all->is_number_integer() || all->get<std::int64_t>() < 1) return false;
  const std::int64_t version = all->get<std::int64_t>();
  synced.erase(all);
  for (auto& [name, value] : synced.items()) {
    (void)name;
    value = nlohmann::json::array({std::move(value), version});
  }
  return true;
}

// The compact text for an object's text `fields` ({"f": v, ...}, already known to
// be valid JSON) at `version` >= 1; nullopt when `fields` is not an object.
inline std::optional<std::string> compact_synced(std::string_view fields, std::int64_t version) {
  constexpr std::string_view kSpace = " \t\r\n";
  const auto first = fields.find_first_not_of(kSpace);
  const auto last = fields.find_last_not_of(kSpace);
  if (first == std::string_view::npos || fields[first] != '{' || fields[last] != '}')
    return std::nullopt;
  std::string_view members = fields.substr(first + 1, last - first - 1);
  const bool empty = members.find_first_not_of(kSpace) == std::string_view::npos;
  std::string out;
  out.reserve(fields.size() + 24);
  out += "{\"\":";
  out += std::to_string(version);
  if (!empty) {
    out += ',';
    out += members;
  }
  out += '}';
  return out;
}

}  // namespace fieldsync::detail
