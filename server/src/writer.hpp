// Group commit: the one writer thread that owns write transactions. Request
// threads hand it jobs and wait; it takes everything queued, runs the jobs in ONE
// transaction (each inside its own savepoint, so a failing job is undone alone),
// commits, and only then completes each waiter. A job's effects are therefore
// acknowledged only once durable.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "server_store.hpp"

namespace fieldsync::server {

struct WriterOptions {
  std::size_t max_batch = 256;  // jobs per transaction
};

class Writer {
  struct Pending;

 public:
  // A unit of work. Returns an Error (or throws StoreFailure) to have its own
  // writes rolled back; other jobs of the batch are unaffected. Runs on the
  // writer thread: it must not call Writer::run (that would deadlock).
  using Job = std::function<Result<void>(WriteTxn&)>;

  // Starts the writer thread. `store` must outlive the Writer.
  explicit Writer(ServerStore& store, WriterOptions options = {});
  // Runs what is queued, then stops the thread.
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Runs `job` in the next group transaction and blocks until that transaction
  // committed (ok) or failed (the error; the job's writes are gone). Thread-safe.
  // After stop() it returns an Errc::io error without running the job.
  Result<void> run(Job job);

  // run() in two halves, for a caller with work to do while its job waits or
  // runs (work the job may itself wait for): start() queues the job, and the
  // ticket's wait() blocks until its transaction committed or failed. The caller
  // must wait() before anything the job uses goes away.
  class Ticket {
   public:
    Result<void> wait();

   private:
    friend class Writer;
    std::shared_ptr<Pending> pending_;  // null when refused
    Error refused_;
  };
  Ticket start(Job job);
  // Queues `job` without waiting (bookkeeping nobody waits for). Thread-safe.
  void post(Job job);

  // Finishes queued jobs and joins the thread. Idempotent.
  void stop();

  // Test hooks: while paused the writer takes no new batch; queued() counts
  // waiting jobs.
  void pause();
  void resume();
  std::size_t queued() const;

 private:
  void loop();
  void run_batch(std::deque<std::shared_ptr<Pending>>& batch);

  ServerStore& store_;
  WriterOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable work_cv_;
  std::deque<std::shared_ptr<Pending>> queue_;
  bool stopping_ = false;
  bool paused_ = false;
  std::thread thread_;
};

}  // namespace fieldsync::server
