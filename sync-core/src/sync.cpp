// The sync engine (sync.hpp): login, and design.md's sync cycle over a Transport -
// push a batch of the outbox and pull the log in one round trip, apply both in one
// store transaction, repeat - with retries, backoff and cancellation.
#include "fieldsync/sync.hpp"

#include <algorithm>
#include <charconv>
#include <deque>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <system_error>
#include <thread>

#include "fieldsync/ids.hpp"

namespace fieldsync {
namespace {

constexpr std::chrono::milliseconds kSleepSlice{50};
constexpr int kMaxInFlight = 8;  // connections one sync may open
// The smallest batch an outbox is split into to keep several requests busy.
constexpr std::int64_t kMinSplitBatch = 50;

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

// What one request's attempts moved, added to the progress by the calling thread.
struct Traffic {
  std::int64_t bytes_up = 0, bytes_down = 0, retries = 0;
};

// Sends `req` until it is answered, retrying transient failures with the same
// request: a change that reached the server before its answer was lost is replayed
// there. Uses the transport only, never the store.
Result<Exchange> exchange(Transport& transport, const HttpRequest& req, const SyncOptions& options,
                          Backoff& backoff, Traffic& traffic) {
  Exchange out;
  for (int attempt = 1;; ++attempt) {
    if (cancelled(options)) return Error(Errc::cancelled, "sync cancelled");
    traffic.bytes_up += static_cast<std::int64_t>(req.body.size());
    auto resp = transport.send(req, options.attempt_timeout);
    Error failure;
    std::optional<std::chrono::milliseconds> wait;
    if (!resp) {
      failure = std::move(resp).error();
    } else {
      traffic.bytes_down += static_cast<std::int64_t>(resp->body.size());
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
    ++traffic.retries;
    if (!sleep_for(options, wait.value_or(backoff.delay(attempt))))
      return Error(Errc::cancelled, "sync cancelled");
  }
}

// What applying one answer added to the totals.
struct Applied {
  std::int64_t sent = 0, applied = 0, conflicts = 0, rejected = 0, received = 0, cursor = 0;
};

Result<Applied> apply_round(Store& store, const OutboxBatch& batch, const SyncResponse& resp) {
  if (auto r = store.apply_batch(batch, resp); !r) return r.error();
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

// Whether the server said at login that it leaves out a device's own entries
// (addition F), so that a second request may be out while one pulls.
bool server_omits_own(Store& store) {
  auto features = store.setting("features");
  if (!features || !features.value()) return false;
  json list = json::parse(*features.value(), nullptr, false);
  if (!list.is_array()) return false;
  for (const auto& f : list)
    if (f.is_string() && f.get_ref<const std::string&>() == "omit_own") return true;
  return false;
}

// A server answered this store "id_reused": its counters are not its own alone (a
// store restored from a copy, say), so "every change up to my last counter is
// known here" no longer holds and its own entries must not be left out.
bool counters_shared(const std::vector<ChangeResult>& results) {
  return std::any_of(results.begin(), results.end(), [](const ChangeResult& r) {
    return r.status == "rejected" && r.error && r.error->code == "id_reused";
  });
}

// A connection of its own, with its backoff; one request at a time.
struct Lane {
  Transport* transport = nullptr;
  std::unique_ptr<Transport> owned;
  std::unique_ptr<Backoff> backoff;
  bool busy = false;
};

// A request out: the changes it carries, whether it pulls, and its answer.
struct Flight {
  OutboxBatch sent;  // its text dropped once sent
  bool pulls = true;
  std::int64_t since = 0;
  Lane* lane = nullptr;
  struct Landed {
    Result<Exchange> exchange;
    Traffic traffic;
  };
  std::future<Landed> landed;
};

}  // namespace

// The cycle of design.md, pipelined. When an answer arrives, the next request
// (a batch of the outbox taken meanwhile) goes out at once, and the answer is
// applied on a helper thread while the server works. With a transport that can
// open another connection and a server that leaves out a device's own entries
// (addition F), up to `options.in_flight` requests are out at once, each on its
// own connection and thread; at most one of them pulls, the others push only
// ("limit": 0), and every pull leaves out the entries of this device's changes,
// whose results it has or will get. Answers are applied strictly in the order
// their requests went out, each in its own transaction (a pull's with its cursor),
// so a sync stopped at any point resumes from the last applied answer; changes
// sent but not applied are resent and replayed. A batch never holds a change of a
// record whose change is out or whose answer is not applied yet: such a change
// waits. The store is used by one thread at a time; `on_progress` and a transport
// that cannot make another run on the calling thread only.
Result<SyncProgress> sync(Store& store, Transport& transport, const SyncOptions& options) {
  auto token = store.setting("token");
  if (!token) return std::move(token).error();
  if (!token.value() || token.value()->empty())
    return Error(Errc::unauthorized, "not logged in: no session token in the store");
  if (options.batch_size < 1 || options.pull_limit < 0 || options.max_attempts < 1)
    return Error(Errc::invalid_argument,
                 "batch_size, pull_limit and max_attempts must be positive");
  if (options.in_flight < 1 || options.in_flight > kMaxInFlight)
    return Error(Errc::invalid_argument, "in_flight must be 1 to " + std::to_string(kMaxInFlight));

  SyncProgress progress;
  std::int64_t batch_size = options.batch_size;
  bool cursor_was_reset = false;
  auto cur = store.cursor();
  if (!cur) return std::move(cur).error();
  progress.cursor = cur.value();
  const std::string device_id = store.device_id();  // read once: the store may be busy below
  std::int64_t since = progress.cursor;  // ahead of the stored cursor while an answer is applied

  // Addition F: every pull leaves out this device's entries up to `own_through`,
  // the highest counter handed out before the sync or taken into a batch during it.
  bool omit_own = server_omits_own(store);
  if (omit_own) {
    auto rejected = store.rejected();
    if (!rejected) return std::move(rejected).error();
    for (const auto& r : rejected.value())
      if (r.reason.code == "id_reused") omit_own = false;
  }
  std::int64_t own_through = 0;
  if (omit_own) {
    auto last = store.last_counter();
    if (!last) return std::move(last).error();
    own_through = last.value();
  }

  std::vector<std::unique_ptr<Lane>> lanes;
  lanes.push_back(std::make_unique<Lane>());
  lanes[0]->transport = &transport;
  lanes[0]->backoff = std::make_unique<Backoff>(options);
  if (omit_own) {
    while (static_cast<int>(lanes.size()) < options.in_flight) {
      auto other = transport.another();
      if (!other) break;
      auto lane = std::make_unique<Lane>();
      lane->owned = std::move(other);
      lane->transport = lane->owned.get();
      lane->backoff = std::make_unique<Backoff>(options);
      lanes.push_back(std::move(lane));
    }
  }
  const std::size_t window = lanes.size();
  // One lane: its requests run on this thread, when their answer is awaited.
  const auto launch_policy = window > 1 ? std::launch::async : std::launch::deferred;
  if (window > 1) {
    // An outbox smaller than one batch goes out in smaller ones, two per lane, so
    // that while one request is out the next is prepared, merged or applied: as
    // one batch, an incremental sync crossed this store, the network, the
    // server's writer and this store again one after the other, the other
    // connection idle. Never below kMinSplitBatch. A larger outbox keeps its
    // batches: its lanes are busy anyway, and more requests per change cost a
    // busy server (100 devices of 500 changes at once: 9,900 -> 6,400 changes/s
    // when they were split too).
    auto pending = store.pending_count();
    if (!pending) return std::move(pending).error();
    const auto lanes_twice = static_cast<std::int64_t>(2 * window);
    if (*pending < batch_size)
      batch_size = std::min(batch_size,
                            std::max(kMinSplitBatch, (*pending + lanes_twice - 1) / lanes_twice));
  }

  // What the helper does with an answer: commits it, then takes the batch after
  // the ones out and encodes its changes, so the next request is ready when the
  // next answer comes.
  struct Job {
    Result<Applied> applied;
    std::optional<Result<OutboxBatch>> next;  // when something was out
  };
  std::optional<Result<OutboxBatch>> prefetched;  // taken while the ones out are out
  std::future<Job> applying;                      // the previous answer, being applied
  struct Helper {                                 // the thread applying it; joined on every way out
    std::thread thread;
    ~Helper() {
      if (thread.joinable()) thread.join();
    }
  } helper;
  std::deque<Flight> flights;  // out, oldest first; destroyed (awaited) before the lanes
  bool pull_out = false;       // a flight out carries the pull
  bool pulled_all = false;     // the last pull answered "more": false

  // Waits for the answer being applied; its totals join the progress.
  auto finish_apply = [&]() -> Result<void> {
    if (!applying.valid()) return {};
    Job job = applying.get();
    if (helper.thread.joinable()) helper.thread.join();
    if (!job.applied) return std::move(job.applied).error();
    if (job.next) prefetched = std::move(job.next);
    add(progress, job.applied.value());
    if (options.on_progress) options.on_progress(progress);
    return {};
  };
  // Waits for every request still out and drops its answer: its changes stay in
  // the outbox and are resent (replayed by the server) later.
  auto drain = [&] {
    for (auto& f : flights)
      if (launch_policy == std::launch::async) f.landed.wait();
    for (auto& f : flights) f.lane->busy = false;
    flights.clear();
    pull_out = false;
  };
  auto fail = [&](Error e) -> Result<SyncProgress> {
    drain();
    (void)finish_apply();  // the first error wins
    return e;
  };
  // The changes out, and those of the answer not yet applied: a new batch holds
  // none of their records, and starts after all of them.
  auto held = [&](const std::vector<Change>* unapplied) {
    std::vector<Change> ids;
    auto add_ids = [&](const std::vector<Change>& cs) {
      for (const auto& c : cs) {
        Change id_only;
        id_only.id = c.id;
        id_only.record = c.record;
        ids.push_back(std::move(id_only));
      }
    };
    for (const auto& f : flights) add_ids(f.sent.changes);
    if (unapplied) add_ids(*unapplied);
    return ids;
  };
  auto launch = [&](OutboxBatch batch, bool pulls) {
    Lane* lane = nullptr;
    for (auto& l : lanes)
      if (!l->busy) lane = l.get();
    lane->busy = true;
    // A batch is in counter order: its last change has its highest counter.
    if (omit_own && !batch.changes.empty())
      if (auto id = ChangeId::parse(batch.changes.back().id))
        own_through = std::max(own_through, id->counter);
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
    // to its seq, which is how apply_sync reads an absent one. "limit": 0 is a push
    // only; "omit_own_through" (addition F) leaves out the entries of this device's
    // other changes, out in another request or answered before.
    req.body = SyncRequest::encode_text(
        device_id, batch.text, pulls ? since : 0, pulls ? options.pull_limit : 0,
        /*echo=*/false, /*compact_versions=*/true, pulls && omit_own ? own_through : 0);
    Flight f;
    batch.text = {};
    f.sent = std::move(batch);
    f.pulls = pulls;
    f.since = since;
    f.lane = lane;
    auto run = [lane, req = std::move(req), &options]() {
      Flight::Landed l{Error(Errc::internal, "not sent"), {}};
      l.exchange = exchange(*lane->transport, req, options, *lane->backoff, l.traffic);
      return l;
    };
    try {
      f.landed = std::async(launch_policy, std::move(run));
    } catch (const std::system_error&) {
      f.landed = std::async(std::launch::deferred, std::move(run));  // no thread to be had
    }
    if (pulls) pull_out = true;
    flights.push_back(std::move(f));
  };
  // Sends what can go now: batches of the outbox while a lane is free, and a pull
  // when none is out and the last one left something. The store must be free.
  auto fill = [&](const std::vector<Change>* unapplied) -> Result<void> {
    while (flights.size() < window) {
      Result<OutboxBatch> b = prefetched ? std::move(*prefetched)
                                         : store.next_batch_encoded(batch_size, held(unapplied));
      prefetched.reset();
      if (!b) return std::move(b).error();
      const bool pulls = !pull_out;
      if (b->changes.empty() && !(pulls && !pulled_all)) break;
      launch(std::move(b).value(), pulls);
    }
    return {};
  };

  for (;;) {
    if (cancelled(options)) return fail(Error(Errc::cancelled, "sync cancelled"));
    if (!applying.valid()) {
      if (auto r = fill(nullptr); !r) return fail(r.error());
      if (flights.empty()) return progress;  // nothing out, nothing to send or pull
      // Take the batch after the ones out while they are out.
      if (window > 1 && !prefetched)
        prefetched = store.next_batch_encoded(batch_size, held(nullptr));
    } else if (flights.empty()) {
      // The last answer is being applied: then look again for changes saved
      // meanwhile or held back because their record was in that batch.
      if (auto r = finish_apply(); !r) return fail(r.error());
      continue;
    }

    Flight f = std::move(flights.front());
    flights.pop_front();
    Flight::Landed landed = f.landed.get();
    f.lane->busy = false;
    if (f.pulls) pull_out = false;
    progress.bytes_up += landed.traffic.bytes_up;
    progress.bytes_down += landed.traffic.bytes_down;
    progress.retries += landed.traffic.retries;
    // The store is consistent again (and free) once the previous answer is in.
    if (auto r = finish_apply(); !r) return fail(r.error());
    if (!landed.exchange) return fail(std::move(landed.exchange).error());
    Exchange& ex = landed.exchange.value();

    if (ex.restart != Exchange::Restart::none) {
      drain();  // they were built on what this request was
      prefetched.reset();
    }
    if (ex.restart == Exchange::Restart::cursor_ahead) {
      if (cursor_was_reset) return fail(ex.failure);
      // The server's log ends before our cursor (restored from a backup): pull
      // from the start again; entries apply idempotently by version.
      if (auto r = store.reset_cursor(); !r) return fail(r.error());
      progress.cursor = since = 0;
      pulled_all = false;
      cursor_was_reset = true;
      continue;
    }
    if (ex.restart == Exchange::Restart::too_large) {
      if (f.sent.changes.size() <= 1) return fail(ex.failure);
      // Resend a smaller prefix of the same outbox (same ids, same content).
      batch_size = std::max<std::int64_t>(1, static_cast<std::int64_t>(f.sent.changes.size()) / 2);
      continue;
    }

    SyncResponse resp = std::move(*ex.answer);
    if (!f.sent.changes.empty() && resp.results.empty())
      return fail(Error(Errc::protocol, "the server answered a push without any result"));
    bool restart_pull = false;
    if (f.pulls) {
      if (resp.more && f.sent.changes.empty() && resp.changes.empty() && resp.cursor <= f.since)
        return fail(Error(Errc::protocol, "the server says there is more but sends nothing new"));
      since = std::max(since, resp.cursor);
      pulled_all = !resp.more;
    } else {
      resp.cursor = 0;  // a push only: its cursor is not where this device's pull stands
    }
    if (omit_own && counters_shared(resp.results)) {
      // Entries left out so far may be another store's changes under this
      // device's counters: stop leaving any out, and pull the log again from the
      // start once this answer is in.
      omit_own = false;
      own_through = 0;
      restart_pull = true;
      drain();
      prefetched.reset();
    }

    if (restart_pull) {
      auto a = apply_round(store, f.sent, resp);
      if (!a) return fail(a.error());
      add(progress, a.value());
      if (options.on_progress) options.on_progress(progress);
      if (auto r = store.reset_cursor(); !r) return fail(r.error());
      progress.cursor = since = 0;
      pulled_all = false;
      continue;
    }

    // The next requests go out before this answer is applied; their batches hold
    // none of its records.
    if (auto r = fill(&f.sent.changes); !r) return fail(r.error());
    auto job = std::make_shared<std::packaged_task<Job()>>(
        [&store, batch_size, sent = std::move(f.sent), answer = std::move(resp),
         out = held(nullptr), take_next = !flights.empty()] {
          Job j{apply_round(store, sent, answer), std::nullopt};
          if (j.applied && take_next) j.next = store.next_batch_encoded(batch_size, out);
          return j;
        });
    applying = job->get_future();
    try {
      helper.thread = std::thread([job] { (*job)(); });
    } catch (const std::system_error&) {
      (*job)();  // no thread to be had: apply here, unpipelined
    }
  }
}

}  // namespace fieldsync
