// The demo regency (demo_setup.hpp): the KLA form, an admin, one officer per kecamatan.
#include "demo_setup.hpp"

#include "auth.hpp"
#include "fieldsync/ids.hpp"
#include "form_catalog.hpp"

namespace fieldsync::server {

std::string officer_name(std::string_view kecamatan_name) {
  std::string out = "officer.";
  bool gap = false;
  for (char c : kecamatan_name) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      if (gap && out.back() != '.') out += '_';
      out += c;
      gap = false;
    } else {
      gap = true;
    }
  }
  return out;
}

Result<DemoSetup> init_demo(ServerStore& store, Writer& writer, std::string_view form_json,
                            std::string_view regions_json, std::int64_t now_ms) {
  auto existing = store.user("admin");
  if (!existing) return existing.error();
  if (*existing)
    return Error(Errc::invalid_argument,
                 "this store already has users; init --demo runs on a new store only");

  json form = json::parse(form_json, nullptr, false);
  if (form.is_discarded()) return Error(Errc::validation, "the KLA form is not valid JSON", "form");
  json regions = json::parse(regions_json, nullptr, false);
  if (regions.is_discarded() || !regions.is_object() || !regions.contains("kecamatan") ||
      !regions["kecamatan"].is_array())
    return Error(Errc::validation, "the region list needs a \"kecamatan\" array", "regions");

  DemoSetup setup;
  std::vector<DemoUser> users;
  std::string regency = "the regency";
  if (auto r = regions.find("regency");
      r != regions.end() && r->is_object() && r->contains("name") && (*r)["name"].is_string())
    regency = (*r)["name"].get<std::string>();
  users.push_back(DemoUser{"admin", generate_password(), "admin", {}, regency});
  for (const auto& k : regions["kecamatan"]) {
    if (!k.is_object() || !k.contains("code") || !k["code"].is_string() || !k.contains("name") ||
        !k["name"].is_string() || !is_valid_region_code(k["code"].get<std::string>()))
      return Error(Errc::validation, "each kecamatan needs a region code and a name",
                   "regions.kecamatan");
    const std::string name = k["name"].get<std::string>();
    users.push_back(DemoUser{
        officer_name(name), generate_password(), "officer", {k["code"].get<std::string>()}, name});
  }

  auto published = publish_form(writer, form, "", "init --demo", now_ms);
  if (!published) return std::move(published).error();
  setup.form_id = published->id;
  setup.form_version = published->version;
  for (const auto& u : users) {
    if (auto r = put_user(writer, UserSpec{u.username, u.role, u.scopes, u.password}, now_ms); !r)
      return r.error();
  }
  setup.users = std::move(users);
  return setup;
}

}  // namespace fieldsync::server
