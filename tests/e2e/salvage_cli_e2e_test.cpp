// `fieldsync-cli salvage` on a damaged store (docs/storage.md "Salvage"): the real
// binary, a store written through fieldsync::core, its header zeroed. Opening it
// tells the officer to salvage; salvage exports every unsynced change and exits 2
// (partial), or 0 for an intact store.
#include <filesystem>
#include <fstream>
#include <iterator>

#include <catch2/catch.hpp>

#include "e2e_fixture.hpp"

#ifdef FIELDSYNC_HAVE_CLI

using namespace fieldsync;
using namespace fieldsync::testing;

namespace {

std::string cli_path() {
  const char* env = std::getenv("FIELDSYNC_BINARY_DIR");
  std::string dir = env && *env ? env : FIELDSYNC_BINARY_DIR;
  return dir + "/tools/cli/fieldsync-cli";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

CommandOutput run(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {cli_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_command(argv);
  if (!r) FAIL("cannot run fieldsync-cli: " << r.error().to_string());
  return *r;
}

}  // namespace

TEST_CASE("fieldsync-cli salvage exports the unsynced changes of a damaged store",
          "[e2e][salvage]") {
  REQUIRE(std::filesystem::exists(cli_path()));
  TempDir dir("fieldsync-salvage");
  const std::string db = dir.file("phone.db");
  std::vector<std::string> ids;
  {
    StoreOptions o;
    o.path = db;
    auto store = Store::open(o);
    REQUIRE(store.ok());
    auto form = Form::parse_text(slurp(std::string(FIELDSYNC_SOURCE_DIR) + "/forms/kla-desa.json"));
    REQUIRE(form.ok());
    REQUIRE((*store)->import_form(*form).ok());
    for (int i = 1; i <= 3; ++i) {
      const std::string code = village(kKecBengkalis, i);
      PutRequest p;
      p.form = kKlaForm;
      p.scope = code;
      p.fields = {{"desa_code", code}, {"period", "2026"}, {"births", i}};
      auto id = (*store)->put(p);
      REQUIRE(id.ok());
      ids.push_back(*id);
    }
  }

  SECTION("intact: exit 0, complete") {
    const auto out = run({"salvage", "--db", db, "--out", dir.file("x.json")});
    INFO(out.err << out.out);
    CHECK(out.exit_code == 0);
    const json summary = json::parse(out.out);
    CHECK(summary.at("complete") == true);
    CHECK(summary.at("unsynced_changes") == 3);
  }

  SECTION("header zeroed: open fails with advice, salvage exports all, exit 2") {
    std::string bytes = slurp(db);
    std::fill(bytes.begin(), bytes.begin() + 100, '\0');
    {
      std::ofstream f(db, std::ios::binary | std::ios::trunc);
      f << bytes;
    }
    const auto status = run({"--db", db, "status"});
    CHECK(status.exit_code == 1);
    CHECK(status.err.find("fieldsync-cli salvage --db " + db) != std::string::npos);

    const std::string export_path = dir.file("export.json");
    const auto out = run({"salvage", "--db", db, "--out", export_path});
    INFO(out.err << out.out);
    CHECK(out.exit_code == 2);
    const json summary = json::parse(out.out);
    CHECK(summary.at("complete") == false);
    CHECK(summary.at("header_repaired") == true);
    CHECK(summary.at("unsynced_changes") == 3);
    CHECK(out.err.find("header was damaged") != std::string::npos);
    const json doc = json::parse(slurp(export_path));
    REQUIRE(doc.at("unsynced_changes").size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
      CHECK(doc.at("unsynced_changes")[i].at("record") == ids[i]);
      CHECK(doc.at("unsynced_changes")[i].at("fields").at("births") == static_cast<int>(i + 1));
    }
    // The damaged file is as it was.
    CHECK(slurp(db) == bytes);

    // A second run does not overwrite the export.
    const auto again = run({"salvage", "--db", db, "--out", export_path});
    CHECK(again.exit_code == 1);
    CHECK(again.err.find("exists already") != std::string::npos);
  }
}

#endif  // FIELDSYNC_HAVE_CLI
