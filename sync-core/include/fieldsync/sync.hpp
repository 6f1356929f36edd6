// The sync engine: runs design.md's cycle over a Transport until the outbox is
// empty and the server has nothing more, with retries, backoff and cancellation.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "fieldsync/error.hpp"
#include "fieldsync/protocol.hpp"
#include "fieldsync/store.hpp"
#include "fieldsync/transport.hpp"

namespace fieldsync {

struct SyncProgress {
  std::int64_t round_trips = 0;
  std::int64_t sent = 0;  // changes pushed and answered
  std::int64_t applied = 0;
  std::int64_t conflicts = 0;
  std::int64_t rejected = 0;
  std::int64_t received = 0;  // log entries pulled
  std::int64_t bytes_up = 0;
  std::int64_t bytes_down = 0;
  std::int64_t retries = 0;
  std::int64_t cursor = 0;
};

struct SyncOptions {
  // Changes per push request at most. With two or more requests out, an outbox
  // smaller than this is split in batches of outbox / (2 x requests out), at
  // least 50.
  std::int64_t batch_size = 500;
  std::int64_t pull_limit = 500;  // log entries per pull
  std::chrono::milliseconds attempt_timeout{30000};
  int max_attempts = 8;  // per round trip, for transient failures
  // Requests out at once. Above 1 only with a transport whose another() gives a
  // second connection and a server that offers "omit_own" (addition F); otherwise,
  // and with 1, one request at a time on the calling thread. At most 8.
  int in_flight = 2;
  std::chrono::milliseconds backoff_initial{200};
  std::chrono::milliseconds backoff_max{30000};
  std::uint64_t jitter_seed = 0;  // 0 = random
  std::string user_agent = "fieldsync-core/0.1";
  // Called after every round trip, on the thread that runs sync().
  std::function<void(const SyncProgress&)> on_progress;
  // Checked between steps and during backoff; set from any thread to stop.
  const std::atomic<bool>* cancel = nullptr;
  // Test hook: sleeps go through this (default: std::this_thread::sleep_for).
  std::function<void(std::chrono::milliseconds)> sleep;
};

// Logs in and stores the token and user in the store's settings.
Result<LoginResponse> login(Store& store, Transport& transport, const std::string& username,
                            const std::string& password,
                            std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Runs sync rounds until done, a permanent error, or cancellation. Each answer is
// committed (results, pulled entries and cursor in one transaction) in order, so
// an interrupted sync resumes where it stopped. The next request is sent while
// the previous answer is committed on a helper thread. `on_progress` runs on the
// calling thread only; so does the transport unless it makes another() and
// options.in_flight > 1, when each connection is used from a thread of its own.
// Uses the token stored by login().
Result<SyncProgress> sync(Store& store, Transport& transport, const SyncOptions& options = {});

}  // namespace fieldsync
