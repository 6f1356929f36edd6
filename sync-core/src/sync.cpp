// The sync engine (sync.hpp): login, and design.md's sync cycle over a Transport -
// push a batch of the outbox and pull the log in one round trip, apply both in one
// store transaction, repeat - with retries, backoff and cancellation.
#include "fieldsync/sync.hpp"

#include <algorithm>
#include <charconv>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <system_error>
#include <thread>

namespace fieldsync {
namespace {

constexpr std::chrono::milliseconds kSleepSlice{50};

bool cancelled(const SyncOptions& o) {
  return o.cancel && o.cancel->load(std::memory_order_relaxed);
}

// The error a non-2xx answer stands for: the wire code from the error body when
// there is one, else the HTTP status class.
Error error_from_response(const HttpResponse& resp) {
  std::string code, message, field;
  json body = json::parse(resp.body, nullptr, false);
  if (body.is_object() && body.contains("error") && body["error"].is_object()) {
    const json& e = body["error"];
    if (e.contains("code") && e["code"].is_string()) code = e["code"].get<std::string>();
    if (e.contains("message") && e["message"].is_string())
      message = e["message"].get<std::string>();
    if (e.contains("field") && e["field"].is_string()) field = e["field"].get<std::string>();
  }
  Errc errc = Errc::protocol;
  if (!code.empty()) {
    errc = errc_from_wire_code(code);
  } else if (resp.status == 401) {
    errc = Errc::unauthorized;
  } else if (resp.status == 403) {
    errc = Errc::forbidden;
  } else if (resp.status == 413) {
    errc = Errc::payload_too_large;
  } else if (resp.status == 429) {
    errc = Errc::throttled;
  } else if (resp.status >= 500) {
    errc = Errc::server;
  }
  // The HTTP status wins over an unexpected body for the classes that decide
  // whether to retry.
  if (resp.status == 429) errc = Errc::throttled;
  if (resp.status >= 500) errc = Errc::server;
  if (message.empty()) message = "the server answered HTTP " + std::to_string(resp.status);
  return Error(errc, "server: " + message, field);
}

// Seconds from a Retry-After header; HTTP dates are not used by fieldsync servers
// and fall back to the backoff.
std::optional<std::chrono::milliseconds> retry_after(const HttpResponse& resp) {
  std::string v = resp.header("Retry-After");
  std::int64_t secs = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), secs);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size() || secs < 0) return std::nullopt;
  return std::chrono::milliseconds(std::min<std::int64_t>(secs, 24 * 3600) * 1000);
}

class Backoff {
 public:
  explicit Backoff(const SyncOptions& o)
      : o_(o), rng_(o.jitter_seed ? o.jitter_seed : std::random_device{}()) {}

  // Exponential with "equal jitter": half the step fixed, half random, so retries
  // of many phones after an outage spread out.
  std::chrono::milliseconds delay(int attempt) {
    auto step = o_.backoff_initial.count();
    for (int i = 1; i < attempt && step < o_.backoff_max.count(); ++i) step *= 2;
    step = std::min<std::int64_t>(step, o_.backoff_max.count());
    std::uniform_int_distribution<std::int64_t> jitter(0, step / 2);
    return std::chrono::milliseconds(step - step / 2 + jitter(rng_));
  }

 private:
  const SyncOptions& o_;
  std::mt19937_64 rng_;
};

// Sleeps in small slices so cancellation is noticed quickly. False if cancelled.
bool sleep_for(const SyncOptions& o, std::chrono::milliseconds total) {
  while (total.count() > 0) {
    if (cancelled(o)) return false;
    auto slice = std::min(total, kSleepSlice);
    if (o.sleep)
      o.sleep(slice);
    else
      std::this_thread::sleep_for(slice);
    total -= slice;
  }
  return !cancelled(o);
}

}  // namespace

Result<LoginResponse> login(Store& store, Transport& transport, const std::string& username,
                            const std::string& password, std::chrono::milliseconds timeout) {
  HttpRequest req;
  req.method = "POST";
  req.target = "/v1/login";
  req.headers = {{"Content-Type", "application/json"}, {"Accept", "application/json"}};
  req.body =
      json{{"username", username}, {"password", password}, {"device_id", store.device_id()}}.dump();
  auto resp = transport.send(req, timeout);
  if (!resp) return std::move(resp).error();
  if (resp->status != 200) return error_from_response(*resp);
  json body = json::parse(resp->body, nullptr, false);
  if (body.is_discarded()) return Error(Errc::protocol, "the login answer is not JSON");
  auto login = LoginResponse::from_json(body);
  if (!login) return std::move(login).error();
  const LoginResponse& l = login.value();
  for (auto [key, value] : {std::pair<const char*, std::string>{"token", l.token},
                            {"token_expires_at", l.expires_at},
                            {"user", l.user.username},
                            {"role", l.user.role},
                            {"scopes", json(l.user.scopes).dump()},
                            {"features", json(l.features).dump()}}) {
    if (auto r = store.set_setting(key, value); !r) return r.error();
  }
  return login;
}

namespace {

// One round trip, with its retries: the answer, or why the request must be
// rebuilt, or (as the Result's error) why the sync stops.
struct Exchange {
  enum class Restart { none, cursor_ahead, too_large };
  std::optional<SyncResponse> answer;
  Restart restart = Restart::none;
  Error failure;  // the error behind `restart`
};

// Sends `req` until it is answered, retrying transient failures with the same
// request: a change that reached the server before its answer was lost is replayed
// there. Uses the transport only, never the store.
Result<Exchange> exchange(Transport& transport, const HttpRequest& req, const SyncOptions& options,
                          Backoff& backoff, SyncProgress& progress) {
  Exchange out;
  for (int attempt = 1;; ++attempt) {
    if (cancelled(options)) return Error(Errc::cancelled, "sync cancelled");
    progress.bytes_up += static_cast<std::int64_t>(req.body.size());
    auto resp = transport.send(req, options.attempt_timeout);
    Error failure;
    std::optional<std::chrono::milliseconds> wait;
    if (!resp) {
      failure = std::move(resp).error();
    } else {
      progress.bytes_down += static_cast<std::int64_t>(resp->body.size());
      if (resp->status == 200) {
        json body = json::parse(resp->body, nullptr, false);
        if (body.is_discarded()) return Error(Errc::protocol, "the sync answer is not JSON");
        auto decoded = SyncResponse::from_json(body);
        if (!decoded) return std::move(decoded).error();
        out.answer = std::move(decoded).value();
        return out;
      }
      failure = error_from_response(*resp);
      if (failure.code == Errc::cursor_ahead) {
        out.restart = Exchange::Restart::cursor_ahead;
        out.failure = std::move(failure);
        return out;
      }
      if (failure.code == Errc::payload_too_large) {
        out.restart = Exchange::Restart::too_large;
        out.failure = std::move(failure);
        return out;
      }
      if (resp->status == 429) wait = retry_after(*resp);
    }
    if (!errc_is_transient(failure.code)) return failure;
    if (attempt >= options.max_attempts) return failure;
    ++progress.retries;
    if (!sleep_for(options, wait.value_or(backoff.delay(attempt))))
      return Error(Errc::cancelled, "sync cancelled");
  }
}

// What applying one answer added to the totals.
struct Applied {
  std::int64_t sent = 0, applied = 0, conflicts = 0, rejected = 0, received = 0, cursor = 0;
};

Result<Applied> apply_round(Store& store, const std::vector<Change>& batch,
                            const SyncResponse& resp) {
  if (auto r = store.apply_sync(batch, resp); !r) return r.error();
  Applied a;
  a.sent = static_cast<std::int64_t>(resp.results.size());
  for (const auto& r : resp.results) {
    if (r.status == "applied") ++a.applied;
    if (r.status == "conflict") ++a.conflicts;
    if (r.status == "rejected") ++a.rejected;
  }
  a.received = static_cast<std::int64_t>(resp.changes.size());
  auto stored = store.cursor();
  if (!stored) return std::move(stored).error();
  a.cursor = stored.value();
  return a;
}

void add(SyncProgress& p, const Applied& a) {
  ++p.round_trips;
  p.sent += a.sent;
  p.applied += a.applied;
  p.conflicts += a.conflicts;
  p.rejected += a.rejected;
  p.received += a.received;
  p.cursor = a.cursor;
}

}  // namespace

// The cycle of design.md, pipelined by one round trip: when an answer arrives, the
// next request (the outbox after the answered batch, and the pull from the
// answer's cursor) is sent at once, and the answer is applied on a helper thread
// while the server works on it. Answers are applied strictly in order, each in
// its own transaction with its cursor, so a sync stopped at any point resumes
// from the last applied answer; changes sent but not applied are resent and
// replayed. A batch never holds a change of a record whose answer is still being
// applied: such a change waits for the next round. The store is used by one
// thread at a time; the transport and the callbacks only on the calling thread.
Result<SyncProgress> sync(Store& store, Transport& transport, const SyncOptions& options) {
  auto token = store.setting("token");
  if (!token) return std::move(token).error();
  if (!token.value() || token.value()->empty())
    return Error(Errc::unauthorized, "not logged in: no session token in the store");
  if (options.batch_size < 1 || options.pull_limit < 0 || options.max_attempts < 1)
    return Error(Errc::invalid_argument,
                 "batch_size, pull_limit and max_attempts must be positive");

  SyncProgress progress;
  Backoff backoff(options);
  std::int64_t batch_size = options.batch_size;
  bool cursor_was_reset = false;
  auto cur = store.cursor();
  if (!cur) return std::move(cur).error();
  progress.cursor = cur.value();
  const std::string device_id = store.device_id();  // read once: the store may be busy below
  std::int64_t since = progress.cursor;  // ahead of the stored cursor while an answer is applied

  // What the helper does with an answer: commits it, then takes the batch after
  // the one now in flight and encodes its changes, so the main thread has it ready
  // when the next answer comes (that batch holds no record of the in-flight one).
  struct Job {
    Result<Applied> applied;
    Result<OutboxBatch> next;
  };
  std::optional<OutboxBatch> prepared;            // the batch to send next
  std::optional<Result<OutboxBatch>> prefetched;  // taken by the helper
  std::future<Job> applying;                      // the previous answer, being applied
  struct Helper {                                 // the thread applying it; joined on every way out
    std::thread thread;
    ~Helper() {
      if (thread.joinable()) thread.join();
    }
  } helper;
  // Waits for the answer being applied; its totals join the progress.
  auto finish_apply = [&]() -> Result<void> {
    if (!applying.valid()) return {};
    Job job = applying.get();
    if (helper.thread.joinable()) helper.thread.join();
    if (!job.applied) return std::move(job.applied).error();
    prefetched = std::move(job.next);
    add(progress, job.applied.value());
    if (options.on_progress) options.on_progress(progress);
    return {};
  };

  for (;;) {
    if (cancelled(options)) return Error(Errc::cancelled, "sync cancelled");
    OutboxBatch batch;
    if (prepared) {
      batch = std::move(*prepared);
      prepared.reset();
    } else {
      auto b = store.next_batch_encoded(batch_size, {});
      if (!b) return std::move(b).error();
      batch = std::move(b).value();
    }

    HttpRequest req;
    req.method = "POST";
    req.target = "/v1/sync";
    req.headers = {{"Authorization", "Bearer " + *token.value()},
                   {"Content-Type", "application/json"},
                   {"Accept", "application/json"},
                   {"User-Agent", options.user_agent}};
    // "echo": false (addition D): the entries of this batch's changes are not sent
    // back; their results say what they did. Servers before addition D ignore it.
    // "compact_versions": true (addition E): a result leaves out the versions equal
    // to its seq, which is how apply_sync reads an absent one.
    req.body = SyncRequest::encode_text(device_id, batch.text, since, options.pull_limit,
                                        /*echo=*/false, /*compact_versions=*/true);
    auto ex = exchange(transport, req, options, backoff, progress);
    // The store is consistent again (and free) once the previous answer is in.
    if (auto r = finish_apply(); !r) return r.error();
    if (!ex) return std::move(ex).error();

    if (ex->restart != Exchange::Restart::none) prefetched.reset();  // taken for another request
    if (ex->restart == Exchange::Restart::cursor_ahead) {
      if (cursor_was_reset) return ex->failure;
      // The server's log ends before our cursor (restored from a backup): pull
      // from the start again; entries apply idempotently by version.
      if (auto r = store.reset_cursor(); !r) return r.error();
      progress.cursor = since = 0;
      cursor_was_reset = true;
      continue;
    }
    if (ex->restart == Exchange::Restart::too_large) {
      if (batch.changes.size() <= 1) return ex->failure;
      // Resend a smaller prefix of the same outbox (same ids, same content).
      batch_size = std::max<std::int64_t>(1, static_cast<std::int64_t>(batch.changes.size()) / 2);
      continue;
    }

    SyncResponse resp = std::move(*ex->answer);
    if (!batch.changes.empty() && resp.results.empty())
      return Error(Errc::protocol, "the server answered a push without any result");
    if (resp.more && batch.changes.empty() && resp.changes.empty() && resp.cursor <= since)
      return Error(Errc::protocol, "the server says there is more but sends nothing new");

    // The next round trip is decided now, before this answer is applied. Its batch
    // was taken (and encoded) by the helper while this request was out, or is here.
    Result<OutboxBatch> following =
        prefetched ? std::move(*prefetched) : store.next_batch_encoded(batch_size, batch.changes);
    prefetched.reset();
    if (!following) return std::move(following).error();
    if (resp.more || !following->changes.empty()) {
      since = std::max(since, resp.cursor);
      // What the helper needs to know of the batch that is about to leave.
      std::vector<Change> leaving;
      leaving.reserve(following->changes.size());
      for (const auto& c : following->changes) {
        Change id_only;
        id_only.id = c.id;
        id_only.record = c.record;
        leaving.push_back(std::move(id_only));
      }
      prepared = std::move(following).value();
      auto job = std::make_shared<std::packaged_task<Job()>>(
          [&store, batch_size, sent = std::move(batch.changes), answer = std::move(resp),
           in_flight = std::move(leaving)] {
            Job j{apply_round(store, sent, answer), OutboxBatch{}};
            if (j.applied) j.next = store.next_batch_encoded(batch_size, in_flight);
            return j;
          });
      applying = job->get_future();
      try {
        helper.thread = std::thread([job] { (*job)(); });
      } catch (const std::system_error&) {
        (*job)();  // no thread to be had: apply here, unpipelined
      }
      continue;
    }

    // Last round trip for what is known now: apply, then look for changes saved
    // meanwhile or held back because their record was in this batch.
    auto a = apply_round(store, batch.changes, resp);
    if (!a) return std::move(a).error();
    add(progress, a.value());
    since = progress.cursor;
    if (options.on_progress) options.on_progress(progress);
    auto rest = store.outbox(1);
    if (!rest) return std::move(rest).error();
    if (rest->empty()) return progress;
  }
}

}  // namespace fieldsync
