// Helpers shared by the fieldsync-bench subcommands: the KLA form and its
// generated records, the bare SQLite insert rate used as the reference, and
// error handling that ends the benchmark with a message.
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "fieldsync/error.hpp"
#include "fieldsync/form.hpp"
#include "fieldsync/store.hpp"

namespace fieldsync::bench {

using Clock = std::chrono::steady_clock;

// Ends the benchmark with "error: <message>" and exit code 1.
[[noreturn]] void die(const std::string& message);

// The value of `r`, or die() with `what` and the error.
template <class T>
T must(Result<T> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().to_string());
  return std::move(r).value();
}
void must(const Result<void>& r, const char* what);

// The shipped KLA form at `path`, or an equivalent one (same shape: key fields,
// about 30 integer/boolean/text indicator fields) when the file is not there.
Form load_form(const std::string& path);

// N valid records like an officer's KLA sheet (key fields always, about 30
// fields in all), in scopes 14.03.xx.yyyy; the same seed gives the same records.
std::vector<PutRequest> make_records(const Form& form, std::int64_t n, std::uint64_t seed);

// Seconds from t0 to now.
double seconds_since(Clock::time_point t0);

// Bare SQLite reference: inserts `records` as JSON rows into a new table in the
// file `path` (WAL, synchronous=FULL, `batch` rows per transaction); records/s.
double run_bare(const std::string& path, const std::vector<PutRequest>& records,
                std::int64_t batch);

}  // namespace fieldsync::bench
