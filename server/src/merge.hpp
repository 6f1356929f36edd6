// The merge rule of protocol.md ("Sync"): per-field versions, conflicts kept with
// every candidate, deletes, duplicate records by the form key, rejections in the
// documented order with a quarantine, and replays answered with the first result.
// Written against WriteTxn only, so it works on any ServerStore.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "fieldsync/protocol.hpp"
#include "server_store.hpp"

namespace fieldsync::server {

// Canonical text of a record's natural key values (duplicate detection), or ""
// when the form has no key or a key field is null or missing.
std::string record_key_text(const Form& form, const std::map<std::string, FieldRow>& fields);

// The replay identity of a change (protocol.md: "a change id seen before with the
// same content"): SHA-256, in hex, of its canonical text with its zero bases left
// out, except base[""], which is always there (0 when absent). A base of 0 and an
// absent one mean the same, so a resend that spells its zero bases otherwise is
// the same change. The device core sends changes in this form, so their text
// needs no rewriting. `raw` is left as it was.
std::string change_hash(json& raw);

// The hash of the text as received: the identity servers kept before
// change_hash().
std::string received_hash(const json& raw);

// Whether a stored identity is that of `raw`, whose change_hash() is `hash`.
// Identities stored before change_hash() are honoured: the text as received, and
// the text with every zero base written out (what the device core sent then), so
// a change sent before an upgrade of server or app is still replayed after it.
bool same_content(const std::string& stored, const json& raw, const std::string& hash);

// What the request thread works out about one received change before the writer
// merges it: its change_hash() and its decode_change(). Both read the change
// only, so the single writer thread need not spend its time on them.
struct Received {
  std::string hash;
  Result<Change> change;
  explicit Received(json& raw);
};

// Hands hashes computed on a request thread to the writer thread as they come:
// the request thread publishes how many are ready, the writer waits for each.
class HashFeed {
 public:
  void publish(std::size_t ready) {
    ready_.store(ready, std::memory_order_release);
    ready_.notify_all();
  }
  // The producer failed: every wait_for() returns false from now on.
  void abandon() { publish(kAbandoned); }
  // Blocks until item `i` is published; false if the producer abandoned.
  bool wait_for(std::size_t i) {
    std::size_t seen = ready_.load(std::memory_order_acquire);
    while (seen <= i) {
      ready_.wait(seen, std::memory_order_acquire);
      seen = ready_.load(std::memory_order_acquire);
    }
    return seen != kAbandoned;
  }

 private:
  static constexpr std::size_t kAbandoned = static_cast<std::size_t>(-1);
  std::atomic<std::size_t> ready_{0};
};

struct MergeContext {
  Caller caller;
  std::string device_id;  // the request's device_id
  std::int64_t received_at_ms = 0;
};

struct MergeStats {
  std::int64_t applied = 0;
  std::int64_t conflicted = 0;  // changes answered "conflict"
  std::int64_t rejected = 0;
  std::int64_t replayed = 0;
  std::int64_t conflicts_opened = 0;  // new conflicts (field, delete, duplicate_record)
  std::map<std::string, std::int64_t> rejected_by_reason;
  std::optional<std::string> last_error;   // "<code>: <message>" of the last rejection
  std::optional<std::int64_t> min_hlc_ms;  // over the changes with a valid hlc
  std::optional<std::int64_t> max_hlc_ms;
};

// The full versions of a compact result (Merger::apply, or a stored one): every
// field of the change `raw` (or "" for a delete) that `r` does not name has the
// result's seq. Results stored whole (before session 4) name them all already.
void expand_versions(ChangeResult& r, const json& raw);

// Processes the changes of one sync request, in order, inside one transaction.
// Not thread-safe; lives for one job on the writer thread.
class Merger {
 public:
  Merger(WriteTxn& txn, MergeContext context);

  // Processes one change as received (any JSON object with a string "id": the
  // request-level shape is checked before), with its hash and decoding in
  // `received` (computed by the caller, off the writer thread; its change is
  // moved from). Returns its result in the compact form of addition E: the
  // versions equal to its seq are left out, and expand_versions() puts them
  // back. Throws StoreFailure when the store fails (the caller's job is then
  // rolled back).
  ChangeResult apply(const json& raw_change, Received& received);

  const MergeStats& stats() const { return stats_; }

 private:
  struct Plan;
  std::optional<RejectReason> check(const json& raw, Result<Change>& decoded, Plan& plan);
  ChangeResult execute(Plan& plan);
  ChangeResult reject(const json& raw, const std::string& id, RejectReason reason, bool remember,
                      const std::string& hash);
  std::shared_ptr<const Form> form(const std::string& id, std::optional<std::int64_t> version);
  std::int64_t join_or_open(const RecordRow& record, const std::string& kind,
                            const std::string& field, std::int64_t seq, const Candidate& candidate);

  WriteTxn& txn_;
  MergeContext ctx_;
  std::string received_at_;
  MergeStats stats_;
  // Parsed forms of this job: (id, version) is immutable once published; the
  // latest version is looked up once per job.
  std::map<std::pair<std::string, std::int64_t>, std::shared_ptr<const Form>> forms_;
  std::map<std::string, std::int64_t> latest_;
};

}  // namespace fieldsync::server
