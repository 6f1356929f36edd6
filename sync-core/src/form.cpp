// Parsing and checking of form definitions, and validation of field values.
#include "fieldsync/form.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <set>

namespace fieldsync {
namespace {

// Defaults that keep one record small when the form sets no bound.
constexpr std::int64_t kDefaultTextMax = 10000;  // characters
constexpr std::int64_t kPhotoRefMax = 2048;      // characters

const std::set<std::string, std::less<>> kFormAttributes = {"id",  "version", "title",
                                                            "key", "fields",  "meta"};
const std::set<std::string, std::less<>> kFieldAttributes = {
    "name", "type", "required", "min", "max", "choices", "label", "hint", "indicator", "aggregate"};

Error invalid(std::string where, std::string message) {
  return Error(Errc::validation, std::move(message), std::move(where));
}

bool valid_name(std::string_view s, bool allow_dot_dash) {
  if (s.empty() || s.size() > 64) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool lower = c >= 'a' && c <= 'z', digit = c >= '0' && c <= '9';
    if (i == 0) {
      if (!(lower || (allow_dot_dash && digit))) return false;
    } else if (!(lower || digit || c == '_' || (allow_dot_dash && (c == '.' || c == '-')))) {
      return false;
    }
  }
  return true;
}

// Number of Unicode code points in valid UTF-8 (continuation bytes not counted).
std::int64_t utf8_length(const std::string& s) {
  std::int64_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

bool is_int64(const json& v) {
  if (v.is_number_integer() && !v.is_number_unsigned()) return true;
  return v.is_number_unsigned() &&
         v.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
}

bool is_finite_number(const json& v) {
  return v.is_number() && (!v.is_number_float() || std::isfinite(v.get<double>()));
}

std::string number_text(const json& v) { return v.dump(); }

Aggregate parse_aggregate(std::string_view s, bool& ok) {
  ok = true;
  if (s == "sum") return Aggregate::sum;
  if (s == "count_true") return Aggregate::count_true;
  if (s == "share_true") return Aggregate::share_true;
  if (s == "none") return Aggregate::none;
  ok = false;
  return Aggregate::none;
}

std::string_view aggregate_name(Aggregate a) {
  switch (a) {
    case Aggregate::sum: return "sum";
    case Aggregate::count_true: return "count_true";
    case Aggregate::share_true: return "share_true";
    case Aggregate::none: return "none";
  }
  return "none";
}

std::string join_choices(const std::vector<std::string>& choices) {
  std::string out;
  for (const auto& c : choices) {
    if (!out.empty()) out += ", ";
    out += c;
  }
  return out;
}

Result<FieldDef> parse_field(const json& j, const std::string& where) {
  if (!j.is_object()) return invalid(where, "each field must be an object");
  for (const auto& [k, v] : j.items()) {
    (void)v;
    if (!kFieldAttributes.count(k)) return invalid(where + "." + k, "unknown field attribute '" + k + "'");
  }
  FieldDef f;
  auto name = j.find("name");
  if (name == j.end() || !name->is_string() || !valid_name(name->get<std::string>(), false))
    return invalid(where + ".name",
                   "a field needs a name of lower-case letters, digits and _ (starting with a letter, at most 64)");
  f.name = name->get<std::string>();
  auto type = j.find("type");
  if (type == j.end() || !type->is_string())
    return invalid(where + ".type", "field '" + f.name + "' needs a type");
  auto t = parse_field_type(type->get<std::string>());
  if (!t) return invalid(where + ".type", "unknown type '" + type->get<std::string>() + "'");
  f.type = *t;
  if (auto r = j.find("required"); r != j.end()) {
    if (!r->is_boolean()) return invalid(where + ".required", "required must be true or false");
    f.required = r->get<bool>();
  }
  for (const char* attr : {"label", "hint"}) {
    if (auto a = j.find(attr); a != j.end()) {
      if (!a->is_string()) return invalid(where + "." + attr, std::string(attr) + " must be a string");
      (std::string_view(attr) == "label" ? f.label : f.hint) = a->get<std::string>();
    }
  }
  bool is_select = f.type == FieldType::select_one || f.type == FieldType::select_multiple;
  if (auto c = j.find("choices"); c != j.end()) {
    if (!is_select) return invalid(where + ".choices", "only select fields have choices");
    if (!c->is_array() || c->empty())
      return invalid(where + ".choices", "choices must be a non-empty array of strings");
    std::set<std::string> seen;
    for (const auto& ch : *c) {
      if (!ch.is_string() || ch.get<std::string>().empty())
        return invalid(where + ".choices", "each choice must be a non-empty string");
      if (!seen.insert(ch.get<std::string>()).second)
        return invalid(where + ".choices", "choice '" + ch.get<std::string>() + "' is listed twice");
      f.choices.push_back(ch.get<std::string>());
    }
  } else if (is_select) {
    return invalid(where + ".choices", "select field '" + f.name + "' needs choices");
  }
  for (const char* attr : {"min", "max"}) {
    auto b = j.find(attr);
    if (b == j.end() || b->is_null()) continue;
    std::string w = where + "." + attr;
    switch (f.type) {
      case FieldType::integer:
        if (!is_int64(*b)) return invalid(w, std::string(attr) + " of an integer field must be an integer");
        break;
      case FieldType::decimal:
        if (!is_finite_number(*b)) return invalid(w, std::string(attr) + " must be a number");
        break;
      case FieldType::date:
        if (!b->is_string() || !is_valid_date(b->get<std::string>()))
          return invalid(w, std::string(attr) + " of a date field must be a date YYYY-MM-DD");
        break;
      case FieldType::text:
      case FieldType::select_multiple:
      case FieldType::photo:
        if (!is_int64(*b) || b->get<std::int64_t>() < 0)
          return invalid(w, std::string(attr) + " must be a count (a whole number >= 0)");
        break;
      default:
        return invalid(w, std::string("a ") + std::string(field_type_name(f.type)) +
                              " field cannot have " + attr);
    }
    (std::string_view(attr) == "min" ? f.min : f.max) = *b;
  }
  if (f.min && f.max) {
    bool bad = f.type == FieldType::date ? f.min->get<std::string>() > f.max->get<std::string>()
                                         : f.min->get<double>() > f.max->get<double>();
    if (bad) return invalid(where + ".min", "min is greater than max");
  }
  if (auto ind = j.find("indicator"); ind != j.end()) {
    if (!is_int64(*ind) || ind->get<std::int64_t>() < 1 || ind->get<std::int64_t>() > 999)
      return invalid(where + ".indicator", "indicator must be a number from 1 to 999");
    f.indicator = static_cast<int>(ind->get<std::int64_t>());
  }
  if (auto agg = j.find("aggregate"); agg != j.end()) {
    bool ok = false;
    if (agg->is_string()) f.aggregate = parse_aggregate(agg->get<std::string>(), ok);
    if (!ok) return invalid(where + ".aggregate", "aggregate must be sum, count_true, share_true or none");
    bool numeric = f.type == FieldType::integer || f.type == FieldType::decimal;
    if (f.aggregate == Aggregate::sum && !numeric)
      return invalid(where + ".aggregate", "sum needs an integer or decimal field");
    if ((f.aggregate == Aggregate::count_true || f.aggregate == Aggregate::share_true) &&
        f.type != FieldType::boolean)
      return invalid(where + ".aggregate", "count_true and share_true need a boolean field");
  }
  return f;
}

}  // namespace

std::string_view field_type_name(FieldType t) noexcept {
  switch (t) {
    case FieldType::integer: return "integer";
    case FieldType::decimal: return "decimal";
    case FieldType::text: return "text";
    case FieldType::boolean: return "boolean";
    case FieldType::date: return "date";
    case FieldType::select_one: return "select_one";
    case FieldType::select_multiple: return "select_multiple";
    case FieldType::geopoint: return "geopoint";
    case FieldType::photo: return "photo";
  }
  return "text";
}

std::optional<FieldType> parse_field_type(std::string_view n) noexcept {
  for (auto t : {FieldType::integer, FieldType::decimal, FieldType::text, FieldType::boolean,
                 FieldType::date, FieldType::select_one, FieldType::select_multiple,
                 FieldType::geopoint, FieldType::photo})
    if (field_type_name(t) == n) return t;
  return std::nullopt;
}

bool is_valid_date(std::string_view s) noexcept {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return false;
  int y = 0, m = 0, d = 0;
  for (std::size_t i : {0u, 1u, 2u, 3u, 5u, 6u, 8u, 9u})
    if (s[i] < '0' || s[i] > '9') return false;
  y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
  m = (s[5] - '0') * 10 + (s[6] - '0');
  d = (s[8] - '0') * 10 + (s[9] - '0');
  std::chrono::year_month_day ymd{std::chrono::year{y}, std::chrono::month{static_cast<unsigned>(m)},
                                  std::chrono::day{static_cast<unsigned>(d)}};
  return y >= 1 && ymd.ok();
}

Result<Form> Form::parse(const json& j) {
  if (!j.is_object()) return invalid("", "a form must be a JSON object");
  for (const auto& [k, v] : j.items()) {
    (void)v;
    if (!kFormAttributes.count(k)) return invalid(k, "unknown form attribute '" + k + "'");
  }
  Form f;
  auto id = j.find("id");
  if (id == j.end() || !id->is_string() || !valid_name(id->get<std::string>(), true))
    return invalid("id", "a form needs an id of lower-case letters, digits, _ . - (at most 64)");
  f.id = id->get<std::string>();
  if (auto v = j.find("version"); v != j.end() && !v->is_null()) {
    if (!is_int64(*v) || v->get<std::int64_t>() < 0)
      return invalid("version", "version must be a whole number >= 0");
    f.version = v->get<std::int64_t>();
  }
  if (auto t = j.find("title"); t != j.end()) {
    if (!t->is_string()) return invalid("title", "title must be a string");
    f.title = t->get<std::string>();
  }
  auto fields = j.find("fields");
  if (fields == j.end() || !fields->is_array() || fields->empty())
    return invalid("fields", "a form needs a non-empty array of fields");
  if (fields->size() > 1000) return invalid("fields", "a form has at most 1000 fields");
  std::set<std::string> names;
  for (std::size_t i = 0; i < fields->size(); ++i) {
    auto fd = parse_field((*fields)[i], "fields[" + std::to_string(i) + "]");
    if (!fd) return std::move(fd).error();
    if (!names.insert(fd->name).second)
      return invalid("fields[" + std::to_string(i) + "].name", "field '" + fd->name + "' is defined twice");
    f.fields.push_back(std::move(fd).value());
  }
  if (auto k = j.find("key"); k != j.end() && !k->is_null()) {
    if (!k->is_array()) return invalid("key", "key must be an array of field names");
    std::set<std::string> seen;
    for (const auto& name : *k) {
      if (!name.is_string() || !names.count(name.get<std::string>()))
        return invalid("key", "key names " + name.dump() + ", which is not a field of the form");
      if (!seen.insert(name.get<std::string>()).second)
        return invalid("key", "key names '" + name.get<std::string>() + "' twice");
      f.key.push_back(name.get<std::string>());
    }
  }
  if (auto m = j.find("meta"); m != j.end() && !m->is_null()) {
    if (!m->is_object()) return invalid("meta", "meta must be an object");
    f.meta = *m;
  }
  return f;
}

Result<Form> Form::parse_text(std::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) return Error(Errc::invalid_argument, "the form is not valid JSON");
  return parse(j);
}

json Form::to_json() const {
  json out = json::object();
  out["id"] = id;
  out["version"] = version;
  if (!title.empty()) out["title"] = title;
  if (!key.empty()) out["key"] = key;
  json fs = json::array();
  for (const auto& f : fields) {
    json fj = {{"name", f.name}, {"type", field_type_name(f.type)}};
    if (f.required) fj["required"] = true;
    if (f.min) fj["min"] = *f.min;
    if (f.max) fj["max"] = *f.max;
    if (!f.choices.empty()) fj["choices"] = f.choices;
    if (!f.label.empty()) fj["label"] = f.label;
    if (!f.hint.empty()) fj["hint"] = f.hint;
    if (f.indicator) fj["indicator"] = *f.indicator;
    if (f.aggregate != Aggregate::none) fj["aggregate"] = aggregate_name(f.aggregate);
    fs.push_back(std::move(fj));
  }
  out["fields"] = std::move(fs);
  if (!meta.empty()) out["meta"] = meta;
  return out;
}

const FieldDef* Form::field(std::string_view name) const noexcept {
  for (const auto& f : fields)
    if (f.name == name) return &f;
  return nullptr;
}

Result<void> Form::validate_value(std::string_view field_name, const json& v) const {
  const FieldDef* f = field(field_name);
  std::string name(field_name);
  if (!f) return invalid(name, "is not a field of form " + id);
  if (v.is_null()) {
    if (f->required) return invalid(name, "is required and cannot be empty");
    return {};
  }
  auto check_bounds_num = [&](double x) -> Result<void> {
    if (f->min && x < f->min->get<double>()) return invalid(name, "must be at least " + number_text(*f->min));
    if (f->max && x > f->max->get<double>()) return invalid(name, "must be at most " + number_text(*f->max));
    return {};
  };
  auto check_count = [&](std::int64_t n, std::string_view what, std::int64_t default_max) -> Result<void> {
    if (f->min && n < f->min->get<std::int64_t>())
      return invalid(name, "must have at least " + number_text(*f->min) + " " + std::string(what));
    std::int64_t max = f->max ? f->max->get<std::int64_t>() : default_max;
    if (n > max) return invalid(name, "must have at most " + std::to_string(max) + " " + std::string(what));
    return {};
  };
  switch (f->type) {
    case FieldType::integer:
      if (!is_int64(v)) return invalid(name, "must be a whole number");
      if (f->min && v.get<std::int64_t>() < f->min->get<std::int64_t>())
        return invalid(name, "must be at least " + number_text(*f->min));
      if (f->max && v.get<std::int64_t>() > f->max->get<std::int64_t>())
        return invalid(name, "must be at most " + number_text(*f->max));
      return {};
    case FieldType::decimal:
      if (!is_finite_number(v))
        return invalid(name, "must be a number");
      return check_bounds_num(v.get<double>());
    case FieldType::text:
      if (!v.is_string()) return invalid(name, "must be text");
      return check_count(utf8_length(v.get_ref<const std::string&>()), "characters", kDefaultTextMax);
    case FieldType::photo:
      if (!v.is_string() || v.get_ref<const std::string&>().empty())
        return invalid(name, "must be a photo reference (text)");
      return check_count(utf8_length(v.get_ref<const std::string&>()), "characters", kPhotoRefMax);
    case FieldType::boolean:
      if (!v.is_boolean()) return invalid(name, "must be yes or no (true or false)");
      return {};
    case FieldType::date: {
      if (!v.is_string() || !is_valid_date(v.get_ref<const std::string&>()))
        return invalid(name, "must be a date written YYYY-MM-DD");
      const auto& s = v.get_ref<const std::string&>();
      if (f->min && s < f->min->get<std::string>()) return invalid(name, "must be on or after " + f->min->get<std::string>());
      if (f->max && s > f->max->get<std::string>()) return invalid(name, "must be on or before " + f->max->get<std::string>());
      return {};
    }
    case FieldType::select_one:
      if (!v.is_string() ||
          std::find(f->choices.begin(), f->choices.end(), v.get<std::string>()) == f->choices.end())
        return invalid(name, "must be one of: " + join_choices(f->choices));
      return {};
    case FieldType::select_multiple: {
      if (!v.is_array()) return invalid(name, "must be a list of choices");
      std::set<std::string> seen;
      for (const auto& c : v) {
        if (!c.is_string() ||
            std::find(f->choices.begin(), f->choices.end(), c.get<std::string>()) == f->choices.end())
          return invalid(name, "each choice must be one of: " + join_choices(f->choices));
        if (!seen.insert(c.get<std::string>()).second)
          return invalid(name, "choice '" + c.get<std::string>() + "' is chosen twice");
      }
      return check_count(static_cast<std::int64_t>(v.size()), "choices",
                         static_cast<std::int64_t>(f->choices.size()));
    }
    case FieldType::geopoint: {
      if (!v.is_object() || v.size() != 2 || !v.contains("lat") || !v.contains("lon") ||
          !is_finite_number(v["lat"]) || !is_finite_number(v["lon"]))
        return invalid(name, "must be a location {\"lat\": ..., \"lon\": ...}");
      double lat = v["lat"].get<double>(), lon = v["lon"].get<double>();
      if (lat < -90 || lat > 90) return invalid(name, "latitude must be between -90 and 90");
      if (lon < -180 || lon > 180) return invalid(name, "longitude must be between -180 and 180");
      return {};
    }
  }
  return invalid(name, "has an unknown type");
}

Result<void> Form::validate_fields(const json& fields, bool creating) const {
  if (!fields.is_object()) return invalid("fields", "fields must be an object of field values");
  for (const auto& [name, value] : fields.items()) {
    if (auto r = validate_value(name, value); !r) return r;
  }
  if (creating) {
    for (const auto& f : this->fields) {
      if (!f.required) continue;
      auto it = fields.find(f.name);
      if (it == fields.end() || it->is_null()) return invalid(f.name, "is required");
    }
  }
  return {};
}

bool Form::same_definition(const Form& other) const {
  json a = to_json(), b = other.to_json();
  a.erase("version");
  b.erase("version");
  return a == b;
}

bool values_equal(const json& a, const json& b) {
  if (a.is_array() && b.is_array()) {
    if (a.size() != b.size()) return false;
    std::vector<std::string> x, y;
    for (const auto& e : a) x.push_back(e.dump());
    for (const auto& e : b) y.push_back(e.dump());
    std::sort(x.begin(), x.end());
    std::sort(y.begin(), y.end());
    return x == y;
  }
  return a == b;  // nlohmann compares numbers across integer/float by value
}

}  // namespace fieldsync
