// fieldsync-cli: the device store from the command line. Creates a store, imports
// forms, saves, reads and deletes records, and shows the outbox, rejected changes
// and receipts. Output is JSON (one object, or JSON lines for lists). Every
// command is one store transaction: a failed command leaves nothing half-written.
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli.hpp"
#include "fieldsync/salvage.hpp"

namespace fieldsync::cli {

Store& Context::store(bool create) {
  if (!store_) {
    StoreOptions o;
    o.path = db;
    o.create = create;
    auto s = Store::open(o);
    if (!s && s.error().code == Errc::not_found)
      throw UserError("no store at " + db + " (create one with: fieldsync-cli --db " + db +
                      " init)");
    store_ = must(std::move(s));
  }
  return *store_;
}

#ifndef FIELDSYNC_CLI_SYNC
void register_sync_commands(CLI::App&, Context&) {}
#endif

namespace {

void print(const json& j) {
  std::cout << j.dump(2) << "\n";
}
void print_line(const json& j) {
  std::cout << j.dump() << "\n";
}

json outbox_json(const OutboxEntry& e) {
  return {{"counter", e.counter},
          {"attempted", e.attempted},
          {"created_at", e.created_at},
          {"change", e.change.to_json()}};
}

json rejected_json(const RejectedChange& r) {
  json reason = {{"code", r.reason.code}, {"message", r.reason.message}};
  if (!r.reason.field.empty()) reason["field"] = r.reason.field;
  return {{"change", r.change.to_json()}, {"reason", reason}, {"rejected_at", r.rejected_at}};
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace
}  // namespace fieldsync::cli

int main(int argc, char** argv) {
  using namespace fieldsync;
  using namespace fieldsync::cli;

  CLI::App app{"fieldsync-cli: a device's local survey store and its outbox"};
  app.require_subcommand(1);
  Context ctx;
  app.add_option("--db", ctx.db, "Store file (SQLite)")->required();

  auto on = [&](CLI::App* sub, std::function<void()> action) {
    sub->callback([&ctx, action] { ctx.actions.push_back(action); });
  };

  auto* init = app.add_subcommand("init", "Create the store (or open it) and print its device id");
  on(init, [&] {
    Store& s = ctx.store(true);
    auto st = must(s.status());
    print({{"device_id", s.device_id()}, {"path", ctx.db}, {"schema_version", st.schema_version}});
  });

  auto* form = app.add_subcommand("form", "Forms kept in the store");
  form->require_subcommand(1);
  std::string form_file;
  auto* form_import = form->add_subcommand("import", "Import a form definition (JSON file)");
  form_import->add_option("FILE", form_file, "Form definition")
      ->required()
      ->check(CLI::ExistingFile);
  on(form_import, [&] {
    auto parsed = Form::parse_text(read_text_file(form_file));
    if (!parsed) throw UserError(form_file + ": " + parsed.error().to_string());
    if (parsed->version < 1) parsed->version = 1;
    must(ctx.store().import_form(*parsed));
    print({{"id", parsed->id}, {"version", parsed->version}});
  });
  auto* form_list = form->add_subcommand("list", "The latest version of each form (JSON lines)");
  on(form_list, [&] {
    for (const auto& f : must(ctx.store().forms()))
      print_line(
          {{"id", f.id}, {"version", f.version}, {"title", f.title}, {"fields", f.fields.size()}});
  });

  PutRequest put_req;
  std::vector<std::string> assignments;
  auto* put =
      app.add_subcommand("put", "Save fields of a record (new unless --record); prints its id");
  put->add_option("--form", put_req.form, "Form id (required for a new record)");
  put->add_option("--scope", put_req.scope, "Region code of a new record, e.g. 14.03.01.2001");
  put->add_option("--record", put_req.record, "Id of the record to change");
  put->add_option("FIELD=VALUE", assignments,
                  "Values by field type: 12, 3.5, true/false/ya/tidak, a,b (select_multiple), "
                  "lat,lon (geopoint), null (clear), text as is")
      ->required();
  on(put, [&] {
    Store& s = ctx.store();
    // Values are typed by the record's form when it exists (the store refuses a
    // different --form), else by the latest version of --form.
    std::string form_id = put_req.form;
    std::optional<std::int64_t> version;
    if (!put_req.record.empty()) {
      if (auto existing = s.get(put_req.record); existing) {
        form_id = existing->form;
        version = existing->form_version;
      } else if (existing.error().code != Errc::not_found) {
        must(std::move(existing));
      }
    }
    if (form_id.empty()) throw UserError("--form is required for a new record");
    Form f = must(s.form(form_id, version));
    put_req.fields = parse_assignments(f, assignments);
    std::cout << must(s.put(put_req)) << "\n";
  });

  std::string record_id;
  auto* get = app.add_subcommand("get", "Show a record with its review marks (JSON)");
  get->add_option("ID", record_id, "Record id")->required();
  on(get, [&] { print(must(ctx.store().get(record_id)).to_json()); });

  RecordQuery query;
  auto* list = app.add_subcommand("list", "Records (JSON lines)");
  list->add_option("--form", query.form, "Only this form");
  list->add_option("--scope", query.scope_prefix, "Only records under this region code");
  list->add_flag("--deleted", query.include_deleted, "Include deleted records");
  on(list, [&] {
    for (const auto& r : must(ctx.store().list(query))) print_line(r.to_json());
  });

  auto* del = app.add_subcommand("delete", "Delete a record");
  del->add_option("ID", record_id, "Record id")->required();
  on(del, [&] {
    must(ctx.store().remove(record_id));
    print({{"deleted", record_id}});
  });

  std::int64_t limit = -1;
  auto* outbox = app.add_subcommand("outbox", "Changes waiting to be sent (JSON lines)");
  outbox->add_option("--limit", limit, "At most this many");
  on(outbox, [&] {
    for (const auto& e : must(ctx.store().outbox(limit))) print_line(outbox_json(e));
  });

  auto* status = app.add_subcommand("status", "Counts, cursor and session (JSON)");
  on(status, [&] { print(must(ctx.store().status()).to_json()); });

  auto* rejected =
      app.add_subcommand("rejected", "Changes the server refused, with reasons (JSON lines)");
  on(rejected, [&] {
    for (const auto& r : must(ctx.store().rejected())) print_line(rejected_json(r));
  });

  std::string change_id;
  auto* discard = app.add_subcommand("discard", "Drop a rejected change");
  discard->add_option("ID", change_id, "Change id, <device_id>:<counter>")->required();
  on(discard, [&] {
    must(ctx.store().discard_rejected(change_id));
    print({{"discarded", change_id}});
  });

  auto* receipts =
      app.add_subcommand("receipts", "Changes the server accepted, newest first (JSON lines)");
  receipts->add_option("--limit", limit, "At most this many");
  on(receipts, [&] {
    for (const auto& r : must(ctx.store().receipts(limit)))
      print_line({{"change_id", r.change_id},
                  {"record", r.record},
                  {"status", r.status},
                  {"seq", r.seq},
                  {"received_at", r.received_at}});
  });

  std::string salvage_out;
  auto* salvage = app.add_subcommand(
      "salvage", "Export what can still be read of a damaged store to a new JSON file");
  salvage->footer(
      "For a store that cannot be opened (damaged, truncated, header lost): reads every row "
      "that can still be read - the unsynced changes first, then rejected changes, records, "
      "receipts, forms, and settings without the session token - and writes them to --out with "
      "the row keys that could not be read (docs/storage.md \"Salvage\"). Never writes to the "
      "store: it reads a copy. --db FILE names the store (before or after `salvage`). Prints a "
      "JSON summary on stdout and a readable one on stderr. Exit code 0 when everything was "
      "read, 2 when the export is partial, 1 on error.");
  salvage->add_option("--out", salvage_out, "Export file to create (must not exist)")->required();
  salvage->fallthrough();  // `salvage --db FILE` as well as `--db FILE salvage`
  on(salvage, [&] {
    auto report = must(salvage_store(ctx.db, salvage_out));
    std::cerr << report.summary();
    json summary = report.summary_json();
    summary["out"] = salvage_out;
    print(summary);
    if (!report.complete()) ctx.exit_code = 2;
  });

  register_sync_commands(app, ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& action : ctx.actions) action();
  } catch (const UserError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return ctx.exit_code;
}
