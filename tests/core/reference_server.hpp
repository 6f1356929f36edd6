// A reference server for the device tests: protocol.md's merge rule, log, pull and
// conflicts, in memory and written for clarity, not speed. Property tests compare
// devices against it; sync-engine tests reach it through a MemoryTransport.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "fieldsync/form.hpp"
#include "fieldsync/protocol.hpp"
#include "fieldsync/transport.hpp"

namespace fieldsync::testing {

class ReferenceServer {
 public:
  struct FieldValue {
    json value;
    std::int64_t version = 0;
    std::string device;  // who set it ("admin" for resolutions)
  };
  struct Record {
    std::string form;
    std::int64_t form_version = 0;
    std::string scope;
    bool deleted = false;
    std::int64_t version = 0;
    std::map<std::string, FieldValue> fields;
  };
  struct Candidate {
    std::string change;  // change id
    json value;          // field value, or the change's fields for a delete conflict
    std::string op;
  };
  struct Conflict {
    std::int64_t id = 0;
    std::string kind;  // "field" | "delete"
    std::string record;
    std::string field;  // "" for delete
    bool open = true;
    std::vector<Candidate> candidates;
  };

  explicit ReferenceServer(std::vector<Form> forms = {});

  // One /v1/sync round trip, already decoded. Changes are processed in order,
  // then the pull answers from `since`, leaving out as returned the entries of
  // device_id's changes with a counter up to omit_own_through (addition F).
  SyncResponse sync(const std::string& device_id, const std::vector<Change>& changes,
                    std::int64_t since, std::int64_t limit, std::int64_t omit_own_through = 0);

  // HTTP face for the sync engine: /v1/login (any password but "wrong") and
  // /v1/sync with a bearer token. Not thread-safe.
  HttpResponse handle(const HttpRequest& request);

  // Whether the login answer offers "omit_own" and sync requests' omit_own_through
  // is honoured (addition F); without it the member is ignored, like a server
  // from before the addition.
  bool offer_omit_own = false;

  // Admin: resolves an open conflict. Field conflicts keep `value` (the server
  // value when absent); delete conflicts keep the record alive (`keep_record`)
  // or delete it. Appends the resolution's log entry.
  void resolve(std::int64_t conflict_id, bool keep_record = true,
               std::optional<json> value = std::nullopt);
  std::vector<std::int64_t> open_conflicts() const;

  // Makes a change with this field value rejected (validation), to exercise the
  // rejected path without a form.
  std::function<bool(const Change&)> reject_if;

  std::map<std::string, Record> records;
  std::vector<LogEntry> log;
  std::map<std::int64_t, Conflict> conflicts;
  std::map<std::string, ChangeResult> results;  // by change id
  std::map<std::string, int> processed;         // change id -> times processed (not replays)
  std::int64_t seq = 0;
  // Field conflicts a device opened against a value it set itself: a device that
  // tracks its bases right never does (its own applied value is its next base).
  int self_conflicts = 0;
  std::string token = "token-1";

 private:
  ChangeResult process(const std::string& device_id, const Change& c);
  std::int64_t open_or_join(const std::string& kind, const std::string& record,
                            const std::string& field, Candidate candidate);
  Error check(const Change& c) const;

  std::map<std::string, Form> forms_;
  std::map<std::string, json> seen_content_;
  std::int64_t next_conflict_ = 1;
};

}  // namespace fieldsync::testing
