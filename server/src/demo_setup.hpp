// `fieldsync-server init --demo`: publishes the KLA village form and creates an
// admin and one officer per kecamatan of the region list, with generated passwords.
// The two JSON files are embedded in the binary at build time (embed_files.cmake).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "server_store.hpp"
#include "writer.hpp"

namespace fieldsync::server {

// The build-time copies of forms/kla-desa.json and forms/bengkalis-regions.json.
std::string_view embedded_kla_desa();
std::string_view embedded_bengkalis_regions();

struct DemoUser {
  std::string username;
  std::string password;  // generated; shown once
  std::string role;
  std::vector<std::string> scopes;
  std::string area;  // the kecamatan name, or the regency for the admin
};

struct DemoSetup {
  std::string form_id;
  std::int64_t form_version = 0;
  std::vector<DemoUser> users;
};

// "officer.bukit_batu" for kecamatan "Bukit Batu".
std::string officer_name(std::string_view kecamatan_name);

// Publishes the form and creates the users. Refuses (Errc::invalid_argument) a
// store that already has an "admin" user, so a second run cannot reset passwords.
// Errc::validation when the form or the region list is malformed.
Result<DemoSetup> init_demo(ServerStore& store, Writer& writer, std::string_view form_json,
                            std::string_view regions_json, std::int64_t now_ms);

}  // namespace fieldsync::server
