// Pieces shared by the fieldsync-cli commands: the opened store, errors that end
// the program, and turning FIELD=VALUE arguments into typed field values.
#pragma once

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "fieldsync/form.hpp"
#include "fieldsync/store.hpp"

namespace fieldsync::cli {

// A failure to report to the user: printed as "error: <message>", exit code 1.
struct UserError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Unwraps a Result or throws a UserError carrying its message.
template <class T>
T must(Result<T> r) {
  if (!r) throw UserError(r.error().to_string());
  return std::move(r).value();
}
inline void must(const Result<void>& r) {
  if (!r) throw UserError(r.error().to_string());
}

struct Context {
  std::string db;
  // The chosen command's work, run after the whole command line parsed.
  std::vector<std::function<void()>> actions;
  int exit_code = 0;  // set by an action that succeeded only in part (salvage)
  // Opens the store named by --db; only `init` creates a missing file.
  Store& store(bool create = false);

 private:
  std::unique_ptr<Store> store_;
};

// Parses one command-line value for a field of `form` by the field's type:
// integer, decimal, boolean (true/false/ya/tidak), select_multiple "a,b",
// geopoint "lat,lon", `null` to clear, anything else as text.
json parse_value(const Form& form, const std::string& field, const std::string& text);
// Parses FIELD=VALUE arguments; a field given twice is an error.
json parse_assignments(const Form& form, const std::vector<std::string>& args);

// Adds `login` and `sync` (sync_commands.cpp, when fieldsync::http is built).
void register_sync_commands(CLI::App& app, Context& ctx);

}  // namespace fieldsync::cli
