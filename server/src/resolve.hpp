// Conflict resolution by an administrator (protocol.md "Conflicts"): each
// resolution is new server changes - log entries with origin
// "admin:<user>:<conflict id>" that reach every device by the normal pull and
// name the conflict as resolved. Written against WriteTxn only, like merge.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "server_store.hpp"

namespace fieldsync::server {

enum class ResolveFailure { none, not_found, already_resolved, deleted, validation };

struct ResolveOutcome {
  ResolveFailure failure = ResolveFailure::none;
  std::string message;
  std::string field;               // for validation failures
  std::vector<std::int64_t> seqs;  // the resolution's log entries, one per record touched
};

// Resolves conflict `id` as `body` asks ({"value"}, {"keep": ...}, {"merge_into"},
// with an optional "note"). Writes nothing when it fails. Throws StoreFailure
// when the store fails. Runs inside a writer job.
ResolveOutcome resolve_conflict(WriteTxn& txn, const Caller& admin, std::int64_t now_ms,
                                std::int64_t id, const json& body);

}  // namespace fieldsync::server
