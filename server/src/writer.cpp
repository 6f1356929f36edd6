// The group-commit writer thread (writer.hpp).
#include "writer.hpp"

#include <utility>

#include "crash_points.hpp"

namespace fieldsync::server {

struct Writer::Pending {
  Job job;
  bool wait = true;
  bool done = false;
  Result<void> result;
  std::mutex mutex;
  std::condition_variable cv;

  void complete(Result<void> r) {
    std::lock_guard lock(mutex);
    result = std::move(r);
    done = true;
    cv.notify_all();
  }
};

Writer::Writer(ServerStore& store, WriterOptions options)
    : store_(store), options_(options), thread_([this] { loop(); }) {}

Writer::~Writer() {
  stop();
}

Result<void> Writer::run(Job job) {
  return start(std::move(job)).wait();
}

Writer::Ticket Writer::start(Job job) {
  Ticket t;
  auto p = std::make_shared<Pending>();
  p->job = std::move(job);
  {
    std::lock_guard lock(mutex_);
    if (stopping_) {
      t.refused_ = Error(Errc::io, "the server is shutting down");
      return t;
    }
    queue_.push_back(p);
  }
  work_cv_.notify_one();
  t.pending_ = std::move(p);
  return t;
}

Result<void> Writer::Ticket::wait() {
  if (!pending_) return refused_;
  std::unique_lock lock(pending_->mutex);
  pending_->cv.wait(lock, [&] { return pending_->done; });
  return std::move(pending_->result);
}

void Writer::post(Job job) {
  auto p = std::make_shared<Pending>();
  p->job = std::move(job);
  p->wait = false;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    queue_.push_back(std::move(p));
  }
  work_cv_.notify_one();
}

void Writer::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    paused_ = false;
  }
  work_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Writer::pause() {
  std::lock_guard lock(mutex_);
  paused_ = true;
}

void Writer::resume() {
  {
    std::lock_guard lock(mutex_);
    paused_ = false;
  }
  work_cv_.notify_all();
}

std::size_t Writer::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

void Writer::loop() {
  for (;;) {
    std::deque<std::shared_ptr<Pending>> batch;
    {
      std::unique_lock lock(mutex_);
      work_cv_.wait(lock,
                    [&] { return (!queue_.empty() && !paused_) || (stopping_ && queue_.empty()); });
      if (queue_.empty()) return;  // stopping and drained
      while (!queue_.empty() && batch.size() < options_.max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    run_batch(batch);
  }
}

namespace {

// Runs one job inside its savepoint; any failure undoes the job's writes only.
Result<void> run_job(WriteTxn& txn, const Writer::Job& job) {
  try {
    txn.savepoint();
  } catch (const StoreFailure& f) {
    return f.error;
  }
  Result<void> r;
  try {
    r = job(txn);
  } catch (const StoreFailure& f) {
    r = f.error;
  } catch (const json::exception& e) {
    r = Error(Errc::internal, std::string("json: ") + e.what());
  } catch (const std::bad_alloc&) {
    r = Error(Errc::io, "out of memory");
  } catch (const std::exception& e) {
    r = Error(Errc::internal, e.what());
  }
  // A failure here escapes as StoreFailure: the transaction can no longer be
  // trusted and the batch fails as a whole.
  if (r) {
    txn.release_savepoint();
  } else {
    txn.rollback_to_savepoint();
  }
  return r;
}

}  // namespace

void Writer::run_batch(std::deque<std::shared_ptr<Pending>>& batch) {
  std::vector<Result<void>> results;
  results.reserve(batch.size());
  Result<void> batch_error;
  auto txn = store_.begin_write();
  if (!txn) {
    batch_error = txn.error();
  } else {
    try {
      for (auto& p : batch) {
        if (!results.empty()) FIELDSYNC_CRASH_POINT("mid_batch");  // jobs done, not committed
        results.push_back(run_job(**txn, p->job));
      }
      FIELDSYNC_CRASH_POINT("before_commit");
      batch_error = (*txn)->commit();
      if (batch_error) FIELDSYNC_CRASH_POINT("after_commit_before_response");
    } catch (const StoreFailure& f) {
      batch_error = f.error;
    }
    txn.value().reset();  // rolls back when not committed
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    Result<void> r = !batch_error ? Result<void>(batch_error.error())
                                  : (i < results.size() ? results[i] : Result<void>());
    if (batch[i]->wait) batch[i]->complete(std::move(r));
  }
}

}  // namespace fieldsync::server
