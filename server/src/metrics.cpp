// Prometheus text rendering of the server's counters (metrics.hpp).
#include "metrics.hpp"

#include <sstream>

namespace fieldsync::server {

void Metrics::observe_request(std::string_view path_group, int status, double seconds) {
  std::lock_guard lock(mutex_);
  ++requests_[{std::string(path_group), status}];
  Histogram& h = latency_[std::string(path_group)];
  for (std::size_t i = 0; i < kBuckets.size(); ++i)
    if (seconds <= kBuckets[i]) ++h.buckets[i];
  ++h.count;
  h.sum += seconds;
}

void Metrics::count_changes(const MergeStats& s) {
  std::lock_guard lock(mutex_);
  changes_["applied"] += s.applied;
  changes_["conflict"] += s.conflicted;
  changes_["rejected"] += s.rejected;
  changes_["replayed"] += s.replayed;
  conflicts_opened_ += s.conflicts_opened;
  for (const auto& [reason, n] : s.rejected_by_reason) rejected_[reason] += n;
}

std::string Metrics::render(const StoreStats* stats) const {
  std::lock_guard lock(mutex_);
  std::ostringstream out;
  out.imbue(std::locale::classic());
  out << "# HELP fieldsync_http_requests_total HTTP requests by path group and status.\n"
         "# TYPE fieldsync_http_requests_total counter\n";
  for (const auto& [key, n] : requests_)
    out << "fieldsync_http_requests_total{path=\"" << key.first << "\",status=\"" << key.second
        << "\"} " << n << "\n";
  out << "# HELP fieldsync_http_request_duration_seconds Time to handle a request, by path group.\n"
         "# TYPE fieldsync_http_request_duration_seconds histogram\n";
  for (const auto& [group, h] : latency_) {
    for (std::size_t i = 0; i < kBuckets.size(); ++i)
      out << "fieldsync_http_request_duration_seconds_bucket{path=\"" << group << "\",le=\""
          << kBuckets[i] << "\"} " << h.buckets[i] << "\n";
    out << "fieldsync_http_request_duration_seconds_bucket{path=\"" << group << "\",le=\"+Inf\"} "
        << h.count << "\n";
    out << "fieldsync_http_request_duration_seconds_sum{path=\"" << group << "\"} " << h.sum
        << "\n";
    out << "fieldsync_http_request_duration_seconds_count{path=\"" << group << "\"} " << h.count
        << "\n";
  }
  out << "# HELP fieldsync_changes_total Pushed changes by result (replayed = retries answered "
         "again).\n"
         "# TYPE fieldsync_changes_total counter\n";
  for (const char* result : {"applied", "conflict", "rejected", "replayed"}) {
    auto it = changes_.find(result);
    out << "fieldsync_changes_total{result=\"" << result << "\"} "
        << (it == changes_.end() ? 0 : it->second) << "\n";
  }
  out << "# HELP fieldsync_changes_rejected_total Rejected changes by reason.\n"
         "# TYPE fieldsync_changes_rejected_total counter\n";
  for (const auto& [reason, n] : rejected_)
    out << "fieldsync_changes_rejected_total{reason=\"" << reason << "\"} " << n << "\n";
  out << "# HELP fieldsync_conflicts_opened_total Conflicts opened (field, delete, "
         "duplicate_record).\n"
         "# TYPE fieldsync_conflicts_opened_total counter\n"
      << "fieldsync_conflicts_opened_total " << conflicts_opened_ << "\n";
  if (stats) {
    out << "# HELP fieldsync_write_transactions_total Write transactions committed (group "
           "commit).\n"
           "# TYPE fieldsync_write_transactions_total counter\n"
        << "fieldsync_write_transactions_total " << stats->write_transactions << "\n"
        << "# HELP fieldsync_wal_checkpoints_total WAL checkpoints, by the thread that ran "
           "them.\n"
           "# TYPE fieldsync_wal_checkpoints_total counter\n"
        << "fieldsync_wal_checkpoints_total{by=\"background\"} "
        << stats->wal_checkpoints_background << "\n"
        << "fieldsync_wal_checkpoints_total{by=\"writer\"} " << stats->wal_checkpoints_by_writer
        << "\n"
        << "# HELP fieldsync_log_head_seq The highest committed log seq.\n"
           "# TYPE fieldsync_log_head_seq gauge\n"
        << "fieldsync_log_head_seq " << stats->head_seq << "\n"
        << "# HELP fieldsync_open_conflicts Conflicts waiting for an administrator.\n"
           "# TYPE fieldsync_open_conflicts gauge\n"
        << "fieldsync_open_conflicts " << stats->open_conflicts << "\n";
  }
  return out.str();
}

}  // namespace fieldsync::server
