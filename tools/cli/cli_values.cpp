// Turning fieldsync-cli's FIELD=VALUE arguments into JSON field values, by the
// type the form gives each field. The store validates the result.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "cli.hpp"

namespace fieldsync::cli {
namespace {

std::string trim(std::string s) {
  auto space = [](unsigned char c) { return std::isspace(c) != 0; };
  s.erase(s.begin(), std::find_if_not(s.begin(), s.end(), space));
  s.erase(std::find_if_not(s.rbegin(), s.rend(), space).base(), s.end());
  return s;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

double parse_number(const std::string& field, const std::string& text) {
  std::string t = trim(text);
  char* end = nullptr;
  double v = std::strtod(t.c_str(), &end);
  if (t.empty() || end != t.c_str() + t.size() || !std::isfinite(v))
    throw UserError(field + ": '" + text + "' is not a number");
  return v;
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    auto pos = text.find(sep, start);
    out.push_back(trim(text.substr(start, pos - start)));
    if (pos == std::string::npos) break;
    start = pos + 1;
  }
  return out;
}

}  // namespace

json parse_value(const Form& form, const std::string& field, const std::string& text) {
  const FieldDef* def = form.field(field);
  if (!def) throw UserError(field + ": is not a field of form " + form.id);
  if (text == "null") return nullptr;
  switch (def->type) {
    case FieldType::integer: {
      std::string t = trim(text);
      std::int64_t v = 0;
      auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
      if (t.empty() || ec != std::errc() || p != t.data() + t.size())
        throw UserError(field + ": '" + text + "' is not a whole number");
      return v;
    }
    case FieldType::decimal:
      return parse_number(field, text);
    case FieldType::boolean: {
      std::string t = lower(trim(text));
      if (t == "true" || t == "ya") return true;
      if (t == "false" || t == "tidak") return false;
      throw UserError(field + ": '" + text + "' is not true/false (ya/tidak)");
    }
    case FieldType::select_multiple: {
      json out = json::array();
      if (trim(text).empty()) return out;
      for (auto& choice : split(text, ',')) out.push_back(choice);
      return out;
    }
    case FieldType::geopoint: {
      auto parts = split(text, ',');
      if (parts.size() != 2) throw UserError(field + ": a location is written lat,lon");
      return json{{"lat", parse_number(field, parts[0])}, {"lon", parse_number(field, parts[1])}};
    }
    case FieldType::text:
    case FieldType::date:
    case FieldType::select_one:
    case FieldType::photo:
      return text;
  }
  return text;
}

json parse_assignments(const Form& form, const std::vector<std::string>& args) {
  json fields = json::object();
  for (const auto& arg : args) {
    auto eq = arg.find('=');
    if (eq == std::string::npos || eq == 0) throw UserError("'" + arg + "' is not FIELD=VALUE");
    std::string name = arg.substr(0, eq);
    if (fields.contains(name)) throw UserError(name + ": given twice");
    fields[name] = parse_value(form, name, arg.substr(eq + 1));
  }
  return fields;
}

}  // namespace fieldsync::cli
