// Every limit of the server in one place, with its default (docs/server.md lists
// them; keep both in step).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace fieldsync::server {

struct ServerLimits {
  std::size_t body_limit = 8 * 1024 * 1024;  // request body bytes -> 413, connection closed
  std::size_t header_limit = 16 * 1024;      // request header bytes -> 431, connection closed
  std::int64_t batch_limit = 1000;           // changes per sync request -> 413 with "limit"
  std::int64_t pull_limit_max = 1000;        // log entries per sync answer (larger asks are capped)
  std::int64_t records_limit_max = 1000;     // records per GET /v1/records page
  int json_max_depth = 64;                   // nesting of a JSON body -> 400
  std::chrono::seconds header_timeout{15};   // to receive a request's header (also keep-alive idle)
  std::chrono::seconds body_timeout{30};     // without progress while receiving a body
  std::chrono::seconds write_timeout{60};    // to send one response
  std::size_t max_connections = 1024;        // more are closed at once
  // Request bodies held at once, all connections together (declared lengths; a
  // chunked body counts as body_limit). A request that would go over while others
  // are held -> 429 with Retry-After, connection closed, body not read.
  std::size_t body_memory = 256 * 1024 * 1024;
  std::chrono::seconds body_memory_retry{2};  // the Retry-After of that 429
  std::chrono::seconds shutdown_grace{30};    // in-flight requests finish within this on SIGTERM
  int workers = 8;                            // threads running requests off the I/O thread
};

}  // namespace fieldsync::server
