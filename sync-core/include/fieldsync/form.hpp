// Form definitions (protocol.md "Forms") and validation of field values.
//
// A Form is data: parsed from JSON, versioned, published by admins on the server
// and pulled by devices. Validation messages are written for field officers
// ("must be at least 0"), and always name the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fieldsync/error.hpp"

namespace fieldsync {

using json = nlohmann::json;

enum class FieldType {
  integer,
  decimal,
  text,
  boolean,
  date,
  select_one,
  select_multiple,
  geopoint,
  photo,
};

std::string_view field_type_name(FieldType t) noexcept;
std::optional<FieldType> parse_field_type(std::string_view name) noexcept;

// How a report aggregates a field over villages (an extension to protocol.md's
// form, documented in docs/forms.md): sum of an integer/decimal, count of `true`,
// share of `true` among villages with a value, or none.
enum class Aggregate { none, sum, count_true, share_true };

struct FieldDef {
  std::string name;  // [a-z][a-z0-9_]{0,63}
  FieldType type = FieldType::text;
  bool required = false;
  // Bounds: numbers for integer/decimal, text length, count of select_multiple;
  // "YYYY-MM-DD" strings for date. Absent = unbounded.
  std::optional<json> min;
  std::optional<json> max;
  std::vector<std::string> choices;  // select_one / select_multiple
  std::string label;                 // for people; may be empty
  std::string hint;
  // KLA metadata (optional): the indicator number 1..24 this field feeds, and how
  // the report aggregates it.
  std::optional<int> indicator;
  Aggregate aggregate = Aggregate::none;
};

class Form {
 public:
  std::string id;  // [a-z0-9][a-z0-9_.-]{0,63}
  std::int64_t version = 0;
  std::string title;
  std::vector<std::string> key;  // natural key field names; may be empty
  std::vector<FieldDef> fields;
  // Optional metadata kept as given (e.g. the KLA indicator list with names and
  // clusters) so reports can label what they count.
  json meta = json::object();

  // Parses and checks a definition. Unknown attributes, duplicate or badly named
  // fields, bounds of the wrong type, a select without choices, a key naming an
  // unknown field: each is an Errc::validation error whose `field` says where
  // ("fields[3].min"). `version` may be absent (0) - the server assigns it.
  static Result<Form> parse(const json& j);
  static Result<Form> parse_text(std::string_view text);
  json to_json() const;

  const FieldDef* field(std::string_view name) const noexcept;

  // Checks one value for one field. `null` is accepted unless the field is
  // required (required fields can never be cleared). Unknown field names are an
  // error ("is not a field of form kla-desa").
  Result<void> validate_value(std::string_view field_name, const json& value) const;

  // Checks the fields of an upsert. `creating` = the record does not exist yet:
  // then every required field must be present and non-null.
  Result<void> validate_fields(const json& fields, bool creating) const;

  // True when the two definitions are equal apart from `version`.
  bool same_definition(const Form& other) const;
};

// Canonical comparison of two field values for the merge rule ("the new value
// equals cur.value"): numbers compare by value (1 == 1.0 for decimals),
// select_multiple arrays compare as sets, objects compare member-wise.
bool values_equal(const json& a, const json& b);

// True for "YYYY-MM-DD" naming a real calendar date.
bool is_valid_date(std::string_view s) noexcept;

}  // namespace fieldsync
