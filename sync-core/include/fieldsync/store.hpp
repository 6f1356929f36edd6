// The device store: surveys in a local SQLite file, and the outbox (change log)
// that records every save in the same transaction as the data it changes.
//
// Threading: a Store is used from one thread at a time (the app's data thread);
// sync() may run on another thread as long as calls are not concurrent. Two Store
// objects may open the same file (SQLite locking keeps them consistent).
// Durability: WAL with synchronous=FULL - a save that returned ok survives the
// app being killed and the phone losing power.
// Errors: every function returns a Result; nothing throws.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fieldsync/error.hpp"
#include "fieldsync/form.hpp"
#include "fieldsync/hlc.hpp"
#include "fieldsync/protocol.hpp"

namespace fieldsync {

struct StoreOptions {
  std::string path;  // SQLite file; created when absent and `create` is true
  bool create = true;
  // Wall clock for the HLC (tests inject a jumping clock). Default: system clock.
  HlcClock::WallClock wall_clock;
};

struct FieldState {
  json value;                    // visible value: the local edit if any, else synced
  std::int64_t version = 0;      // server version of the synced value (0 = never)
  bool dirty = false;            // has an edit not yet accepted by the server
  bool under_review = false;     // an open conflict on the server covers it
  std::optional<json> my_value;  // under review: the value this device offered
  std::int64_t conflict_id = 0;  // under review: the server's conflict id
};

struct RecordView {
  std::string id;
  std::string form;
  std::int64_t form_version = 0;
  std::string scope;
  bool deleted = false;                      // visible state (a pending local delete counts)
  bool dirty = false;                        // any unsynced change for this record
  std::int64_t version = 0;                  // server record version last seen
  bool under_review = false;                 // a record-level (delete/duplicate) conflict is open
  std::map<std::string, FieldState> fields;  // only fields that have ever had a value

  json to_json() const;  // for the CLI and the C ABI
};

struct PutRequest {
  std::string form;
  std::string scope;                         // required when creating; must match when updating
  std::string record;                        // empty = create a new record (UUIDv7)
  json fields = json::object();              // field -> value; null clears
  std::optional<std::int64_t> form_version;  // default: latest imported
};

struct RecordQuery {
  std::string form;          // empty = any
  std::string scope_prefix;  // empty = any; matched with scope_covers()
  bool include_deleted = false;
  std::int64_t limit = -1;  // -1 = no limit
};

struct OutboxEntry {
  std::int64_t counter = 0;
  Change change;
  bool attempted = false;  // sent at least once (never coalesced into again)
  std::string created_at;
};

// A batch of the outbox to push, and its "changes" array as JSON text. An
// upsert's fields are not parsed: its `fields` is null and fields_text[i] holds
// them as stored (a JSON object). A push applies thousands of changes whose
// fields are only ever written out again, and parsing them into values was a
// fifth of a device's work in a push.
struct OutboxBatch {
  std::vector<Change> changes;
  std::vector<std::string> fields_text;  // each change's, as stored
  std::string text;
};

struct RejectedChange {
  Change change;
  RejectReason reason;
  std::string rejected_at;
};

struct Receipt {
  std::string change_id;
  std::string record;
  std::string status;  // "applied" | "conflict"
  std::int64_t seq = 0;
  std::string received_at;  // local time the result arrived
};

struct StoreStatus {
  std::string device_id;
  int schema_version = 0;
  std::int64_t records = 0;  // visible live records
  std::int64_t deleted = 0;  // tombstones
  std::int64_t pending = 0;  // outbox entries
  std::int64_t rejected = 0;
  std::int64_t under_review = 0;  // fields + records under review
  std::int64_t cursor = 0;
  std::string server_url;
  std::string user;
  std::string last_sync_at;
  json to_json() const;
};

class Store {
 public:
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Opens or creates the store: schema, migrations, device id. A file written by a
  // newer schema -> Errc::schema_too_new (the file is left untouched); a file that
  // is not a fieldsync store or is damaged -> Errc::corrupt.
  static Result<std::unique_ptr<Store>> open(const StoreOptions& options);

  static constexpr int kSchemaVersion = 4;

  const std::string& device_id() const;

  // Forms. Importing the same (id, version) twice with the same definition is a
  // no-op; with a different definition it is an error.
  Result<void> import_form(const Form& form);
  Result<std::vector<Form>> forms() const;  // latest version of each
  Result<Form> form(const std::string& id, std::optional<std::int64_t> version = {}) const;

  // Saves fields of a record (creating it when `record` is empty or unknown
  // locally) and appends one change to the outbox, in one transaction. Returns
  // the record id. Validates against the form; several unsynced saves of one
  // record coalesce into one outbox change while it has not been sent.
  Result<std::string> put(const PutRequest& request);
  // Many saves in one transaction (imports, benchmarks): all or nothing.
  Result<std::vector<std::string>> put_many(const std::vector<PutRequest>& requests);
  // Deletes a record (a tombstone and a delete change).
  Result<void> remove(const std::string& record_id);

  Result<RecordView> get(const std::string& record_id) const;
  Result<std::vector<RecordView>> list(const RecordQuery& query) const;

  // Outbox in order; limit -1 = all.
  Result<std::vector<OutboxEntry>> outbox(std::int64_t limit = -1) const;
  // The next batch to push: a prefix of the outbox with at most `max` changes that
  // stops before a second change of a record already in the batch (so the server
  // never sees a device's two changes of one record with stale bases). Marks them
  // attempted (durably) before returning.
  Result<std::vector<Change>> next_batch(std::int64_t max);
  // The batch that follows `in_flight` (a batch sent whose answer is not applied
  // yet): the same rule over the outbox after in_flight's last change, stopping
  // also before a change of a record in `in_flight`. Lets sync() send the next
  // round trip while the previous answer is being applied.
  Result<std::vector<Change>> next_batch(std::int64_t max, const std::vector<Change>& in_flight);
  // next_batch(max, in_flight) with the batch's "changes" array of a sync request
  // already encoded (SyncRequest::encode_changes), each change's fields written
  // from the outbox's stored text rather than encoded again. Upserts' fields are
  // left as text (OutboxBatch); apply its answer with apply_batch.
  Result<OutboxBatch> next_batch_encoded(std::int64_t max, const std::vector<Change>& in_flight);

  // Applies one sync round trip atomically: the per-change results for `sent`,
  // the pulled entries and the new cursor, in one transaction. Pulled values never
  // overwrite a field with unsynced local edits. Unknown result ids are an error
  // (Errc::protocol) and nothing is applied. `sent` is the batch as next_batch()
  // returned it: those changes are applied as given (their outbox rows are frozen
  // once handed out); any other change is read from the outbox.
  Result<void> apply_sync(const std::vector<Change>& sent, const SyncResponse& response);
  // apply_sync for a batch of next_batch_encoded: a first answer for a new record
  // writes its values from the fields text without parsing them.
  Result<void> apply_batch(const OutboxBatch& sent, const SyncResponse& response);

  Result<std::int64_t> cursor() const;
  // Changes in the outbox (StoreStatus::pending, without status()'s other counts).
  Result<std::int64_t> pending_count() const;
  // The highest change counter this store has handed out (0: none yet). Every
  // change of this device up to it is in the outbox, or its result was applied,
  // or it never left the phone (sync's omit_own_through, addition F).
  Result<std::int64_t> last_counter() const;
  // Sets the pull cursor back to 0, the one way it ever goes down: for a server
  // that answered cursor_ahead (its log is shorter than this device saw, e.g. it
  // was restored from a backup). The next sync pulls the whole log again; entries
  // apply idempotently, field by field, by version.
  Result<void> reset_cursor();
  Result<StoreStatus> status() const;
  Result<std::vector<RejectedChange>> rejected() const;
  // Drops a rejected change the officer decided not to fix.
  Result<void> discard_rejected(const std::string& change_id);
  Result<std::vector<Receipt>> receipts(std::int64_t limit = -1) const;

  // Settings kept in the store: server URL, user name and the session token.
  Result<void> set_setting(const std::string& key, const std::string& value);
  Result<std::optional<std::string>> setting(const std::string& key) const;

  struct Impl;

 private:
  Result<OutboxBatch> next_batch_encoded(std::int64_t max, const std::vector<Change>& in_flight,
                                         bool encode);
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fieldsync
