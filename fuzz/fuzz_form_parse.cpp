// libFuzzer target: a form definition, optionally followed by a line "----" and a
// JSON object of field values. The form must survive to_json/parse unchanged; each
// value is validated against its named field and against every field of the form,
// and validate_fields must agree with validate_value.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fieldsync/form.hpp"
#include "fuzz_check.hpp"

using namespace fieldsync;

namespace {

constexpr std::string_view kSeparator = "\n----\n";

void check_value(const Form& form, std::string_view name, const json& value) {
  auto r = form.validate_value(name, value);
  if (!r) {
    FUZZ_CHECK(r.error().code == Errc::validation);
    FUZZ_CHECK(r.error().field == name);
  } else {
    FUZZ_CHECK(form.field(name) != nullptr);
  }
  FUZZ_CHECK(values_equal(value, value));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto cut = input.find(kSeparator);
  std::string_view form_text = input.substr(0, cut);
  auto form = Form::parse_text(form_text);
  if (!form) {
    FUZZ_CHECK(form.error().code == Errc::validation ||
               form.error().code == Errc::invalid_argument);
    return 0;
  }
  json encoded = form->to_json();
  auto again = Form::parse(encoded);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->to_json() == encoded);
  FUZZ_CHECK(again->same_definition(*form));
  FUZZ_CHECK(again->version == form->version);
  auto from_text = Form::parse_text(encoded.dump());
  FUZZ_CHECK(from_text.ok());
  FUZZ_CHECK(from_text->to_json() == encoded);

  if (cut == std::string_view::npos) return 0;
  std::string_view values_text = input.substr(cut + kSeparator.size());
  json values = json::parse(values_text.begin(), values_text.end(), nullptr, false);
  if (values.is_discarded()) return 0;
  if (!values.is_object()) {
    FUZZ_CHECK(!form->validate_fields(values, false).ok());
    values = json{{"_", values}};
  }
  bool all_valid = true;
  for (const auto& [name, value] : values.items()) {
    check_value(*form, name, value);
    all_valid = all_valid && form->validate_value(name, value).ok();
    for (const auto& field : form->fields) check_value(*form, field.name, value);
    for (const auto& [other_name, other] : values.items()) {
      (void)other_name;
      FUZZ_CHECK(values_equal(value, other) == values_equal(other, value));
    }
  }
  auto update = form->validate_fields(values, false);
  FUZZ_CHECK(update.ok() == all_valid);
  auto create = form->validate_fields(values, true);
  if (create.ok()) FUZZ_CHECK(update.ok());
  if (update.ok() && !create.ok()) {
    const FieldDef* f = form->field(create.error().field);
    FUZZ_CHECK(f != nullptr && f->required);
  }
  return 0;
}
