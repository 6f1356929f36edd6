// Helpers shared by the fieldsync-bench subcommands (see bench_common.hpp): moved
// here from local_bench.cpp so the sync benchmark uses the very same records and
// bare SQLite reference.
#include "bench_common.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>

#include "fieldsync/ids.hpp"

namespace fieldsync::bench {
namespace {

// A valid value for a field, from the generator.
json value_for(const FieldDef& f, std::mt19937_64& rng, std::int64_t i) {
  auto num = [&](const std::optional<json>& b, double fallback) {
    return b && b->is_number() ? b->get<double>() : fallback;
  };
  switch (f.type) {
    case FieldType::integer: {
      auto lo = static_cast<std::int64_t>(num(f.min, 0));
      auto hi = static_cast<std::int64_t>(num(f.max, 1000));
      hi = std::min(hi, lo + 5000);
      return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
    }
    case FieldType::decimal:
      return std::uniform_real_distribution<double>(num(f.min, 0),
                                                    std::min(num(f.max, 1000), 1e6))(rng);
    case FieldType::boolean:
      return (rng() & 1) != 0;
    case FieldType::date:
      return "2026-0" + std::to_string(1 + rng() % 9) + "-1" + std::to_string(rng() % 10);
    case FieldType::select_one:
      return f.choices[rng() % f.choices.size()];
    case FieldType::select_multiple:
      return json::array({f.choices[rng() % f.choices.size()]});
    case FieldType::geopoint:
      return {{"lat", 1.0 + (rng() % 10000) / 10000.0}, {"lon", 101.5 + (rng() % 10000) / 10000.0}};
    case FieldType::photo:
      return "photo-" + std::to_string(i) + ".jpg";
    case FieldType::text: {
      auto lo = static_cast<std::size_t>(num(f.min, 0));
      auto hi = static_cast<std::size_t>(num(f.max, 200));
      std::string s = "catatan desa " + std::to_string(i) + " dari petugas lapangan";
      if (s.size() > hi) s.resize(hi);
      while (s.size() < lo) s += 'x';
      return s;
    }
  }
  return nullptr;
}

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err ? err : "?";
    sqlite3_free(err);
    die(std::string("sqlite: ") + m);
  }
}

}  // namespace

// CLI11's App::exit() prints nothing for a RuntimeError, so the message is
// written here; the exception still unwinds (temporary files, the server process).
[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  throw CLI::RuntimeError(1);
}

void must(const Result<void>& r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().to_string());
}

// The shipped KLA form, or an equivalent one (same shape: key fields, about 30
// integer/boolean/text indicator fields) when the file is not there.
Form load_form(const std::string& path) {
  std::ifstream in(path);
  if (in) {
    std::stringstream text;
    text << in.rdbuf();
    auto f = Form::parse_text(text.str());
    if (!f) die(path + ": " + f.error().to_string());
    if (f->version < 1) f->version = 1;
    return std::move(f).value();
  }
  json fields = json::array({{{"name", "desa_code"}, {"type", "text"}, {"required", true}},
                             {{"name", "period"}, {"type", "text"}, {"required", true}},
                             {{"name", "officer_notes"}, {"type", "text"}, {"max", 2000}}});
  for (int i = 1; i <= 28; ++i) {
    std::string name = "indicator_" + std::to_string(i);
    if (i % 3 == 0)
      fields.push_back({{"name", name + "_ok"}, {"type", "boolean"}});
    else
      fields.push_back(
          {{"name", name + "_count"}, {"type", "integer"}, {"min", 0}, {"max", 100000}});
  }
  json def = {{"id", "kla-desa"},
              {"version", 1},
              {"title", "KLA (generated)"},
              {"key", {"desa_code", "period"}},
              {"fields", fields}};
  return must(Form::parse(def), "generated form");
}

// N records like an officer's KLA sheet: key fields always, about 30 fields in all.
std::vector<PutRequest> make_records(const Form& form, std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<PutRequest> out;
  out.reserve(static_cast<std::size_t>(n));
  std::size_t optional = 0;
  for (const auto& f : form.fields) optional += f.required ? 0 : 1;
  double keep = optional ? std::min(1.0, 28.0 / static_cast<double>(optional)) : 1.0;
  std::uniform_real_distribution<double> coin(0, 1);
  for (std::int64_t i = 0; i < n; ++i) {
    char code[32];
    std::snprintf(code, sizeof code, "14.03.%02d.%04d", static_cast<int>(1 + i % 11),
                  static_cast<int>(2001 + (i / 11) % 7999));
    PutRequest p;
    p.form = form.id;
    p.scope = code;
    for (const auto& f : form.fields) {
      if (f.name == "desa_code") {
        p.fields[f.name] = code;
      } else if (f.name == "period") {
        p.fields[f.name] = std::to_string(2020 + i % 7);
      } else if (f.required || coin(rng) < keep) {
        p.fields[f.name] = value_for(f, rng, i);
      }
    }
    auto ok = form.validate_fields(p.fields, true);
    if (!ok) die("generated record is invalid: " + ok.error().to_string());
    out.push_back(std::move(p));
  }
  return out;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double run_bare(const std::string& path, const std::vector<PutRequest>& records,
                std::int64_t batch) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) die("cannot open " + path);
  exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;");
  exec(db,
       "CREATE TABLE records(id TEXT PRIMARY KEY, form TEXT NOT NULL, scope TEXT NOT NULL, "
       "data TEXT NOT NULL)");
  sqlite3_stmt* insert = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO records(id, form, scope, data) VALUES(?1, ?2, ?3, ?4)", -1,
                     &insert, nullptr);
  auto t0 = Clock::now();
  for (std::size_t i = 0; i < records.size(); i += static_cast<std::size_t>(batch)) {
    auto end = std::min(records.size(), i + static_cast<std::size_t>(batch));
    exec(db, "BEGIN");
    for (std::size_t k = i; k < end; ++k) {
      const PutRequest& r = records[k];
      std::string id = new_uuid_v7();
      std::string data = r.fields.dump();
      sqlite3_bind_text(insert, 1, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
      sqlite3_bind_text(insert, 2, r.form.data(), static_cast<int>(r.form.size()),
                        SQLITE_TRANSIENT);
      sqlite3_bind_text(insert, 3, r.scope.data(), static_cast<int>(r.scope.size()),
                        SQLITE_TRANSIENT);
      sqlite3_bind_text(insert, 4, data.data(), static_cast<int>(data.size()), SQLITE_TRANSIENT);
      if (sqlite3_step(insert) != SQLITE_DONE) die(std::string("insert: ") + sqlite3_errmsg(db));
      sqlite3_reset(insert);
    }
    exec(db, "COMMIT");
  }
  double rate = static_cast<double>(records.size()) / seconds_since(t0);
  sqlite3_finalize(insert);
  sqlite3_close(db);
  return rate;
}

}  // namespace fieldsync::bench
