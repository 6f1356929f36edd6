// Shared pieces of the device-store tests: a small survey form, and opening a
// store on a file in a temporary directory.
#pragma once

#include <memory>
#include <string>

#include <catch2/catch.hpp>

#include "fieldsync/store.hpp"
#include "support/server_process.hpp"

// Own namespace: tests/support is compiled into every test program, and a helper
// of the same name there would silently replace one of these (ODR).
namespace fieldsync::store_tests {

using testing::TempDir;

// Temporary directories are the shared TempDir of tests/support/server_process.hpp
// (on tmpfs when there is one: the store fsyncs every commit).

// A small form exercising the value types the store handles.
inline Form survey_form(std::int64_t version = 1) {
  auto f = Form::parse(json::parse(R"({
    "id": "survey", "title": "Test survey", "key": ["name"],
    "fields": [
      {"name": "name", "type": "text", "required": true, "max": 40},
      {"name": "count", "type": "integer", "min": 0},
      {"name": "ok", "type": "boolean"},
      {"name": "note", "type": "text", "max": 50},
      {"name": "tags", "type": "select_multiple", "choices": ["a", "b", "c"]},
      {"name": "when", "type": "date"}]})"));
  REQUIRE(f.ok());
  f->version = version;
  return std::move(f).value();
}

inline std::unique_ptr<Store> open_store(const std::string& path, HlcClock::WallClock wall = {}) {
  StoreOptions o;
  o.path = path;
  o.wall_clock = std::move(wall);
  auto s = Store::open(o);
  if (!s) FAIL("open failed: " << s.error().to_string());
  return std::move(s).value();
}

inline std::unique_ptr<Store> open_with_form(const std::string& path) {
  auto s = open_store(path);
  auto r = s->import_form(survey_form());
  if (!r) FAIL("import failed: " << r.error().to_string());
  return s;
}

inline PutRequest new_record(json fields, std::string scope = "14.03.01.2001") {
  PutRequest p;
  p.form = "survey";
  p.scope = std::move(scope);
  p.fields = std::move(fields);
  return p;
}

inline PutRequest edit(const std::string& id, json fields) {
  PutRequest p;
  p.record = id;
  p.fields = std::move(fields);
  return p;
}

// The error a store file gives at open (the open must fail).
inline Error open_error(const std::string& path) {
  StoreOptions options;
  options.path = path;
  auto s = Store::open(options);
  REQUIRE_FALSE(s.ok());
  return s.error();
}

}  // namespace fieldsync::store_tests
