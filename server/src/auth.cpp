// Passwords, tokens and login throttling (auth.hpp).
#include "auth.hpp"

#include <algorithm>

#include "crypto.hpp"
#include "fieldsync/hlc.hpp"
#include "fieldsync/ids.hpp"

namespace fieldsync::server {
namespace {

constexpr std::string_view kAlgorithm = "pbkdf2-sha256";
constexpr std::size_t kSaltBytes = 16;
constexpr std::size_t kTokenBytes = 32;
constexpr std::size_t kMaxTokenLength = 128;
// Salt for the dummy PBKDF2 run on unknown users, so their answer takes as long.
constexpr std::string_view kDummySalt = "fieldsync-no-such-user";

bool is_token_text(std::string_view t) {
  if (t.empty() || t.size() > kMaxTokenLength) return false;
  return std::all_of(t.begin(), t.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

// Counts one failure for a throttle key: a new window when the old one is over,
// and a block that doubles with each failure beyond the allowance.
ThrottleState add_failure(ThrottleState s, std::int64_t now, std::int64_t max_failures,
                          const ThrottlePolicy& p) {
  if (s.failures == 0 || now - s.window_start_ms >= p.window_ms) {
    s.failures = 0;
    s.window_start_ms = now;
  }
  ++s.failures;
  if (s.failures >= max_failures) {
    std::int64_t over = std::min<std::int64_t>(s.failures - max_failures, 30);
    std::int64_t block = std::min(p.max_block_ms, p.first_block_ms << over);
    s.blocked_until_ms = std::max(s.blocked_until_ms, now + block);
  }
  return s;
}

std::int64_t retry_after_s(const ThrottleState& s, std::int64_t now) {
  if (s.blocked_until_ms <= now) return 0;
  return (s.blocked_until_ms - now + 999) / 1000;
}

}  // namespace

PasswordHash hash_password(std::string_view password, std::int64_t iterations) {
  PasswordHash h;
  h.algorithm = std::string(kAlgorithm);
  h.iterations = iterations;
  h.salt = random_bytes(kSaltBytes);
  h.hash = pbkdf2_sha256(password, h.salt, iterations);
  return h;
}

bool verify_password(std::string_view password, const PasswordHash& stored) {
  if (stored.algorithm != kAlgorithm || stored.iterations < 1 || stored.hash.empty()) return false;
  return constant_time_equal(
      pbkdf2_sha256(password, stored.salt, stored.iterations, stored.hash.size()), stored.hash);
}

std::string generate_password() {
  return base64url(random_bytes(15));
}

std::string token_hash(std::string_view token) {
  return sha256(token);
}

bool is_valid_username(std::string_view name) noexcept {
  if (name.empty() || name.size() > 64) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) return false;
  }
  return true;
}

Result<void> put_user(Writer& writer, const UserSpec& spec, std::int64_t now_ms,
                      std::int64_t iterations) {
  if (!is_valid_username(spec.name))
    return Error(Errc::validation, "a user name is 1-64 of a-z, 0-9, '.', '_', '-'", "name");
  if (spec.role != "officer" && spec.role != "admin")
    return Error(Errc::validation, "the role must be officer or admin", "role");
  for (const auto& s : spec.scopes)
    if (!is_valid_region_code(s))
      return Error(Errc::validation, "'" + s + "' is not a region code", "scope");
  if (spec.password.empty() || spec.password.size() > 1024)
    return Error(Errc::validation, "the password must be 1-1024 bytes", "password");
  UserRecord u;
  u.name = spec.name;
  u.role = spec.role;
  u.scopes = spec.scopes;
  u.password = hash_password(spec.password, iterations);
  u.created_at_ms = now_ms;
  return writer.run([&](WriteTxn& txn) -> Result<void> {
    if (auto old = txn.user(u.name)) u.created_at_ms = old->created_at_ms;
    txn.put_user(u);
    return {};
  });
}

Result<std::int64_t> revoke_user(Writer& writer, const std::string& name) {
  std::int64_t revoked = 0;
  auto r = writer.run([&](WriteTxn& txn) -> Result<void> {
    auto u = txn.user(name);
    if (!u) return Error(Errc::not_found, "no user " + name);
    u->disabled = true;
    txn.put_user(*u);
    revoked = txn.revoke_user_tokens(name);
    return {};
  });
  if (!r) return r.error();
  return revoked;
}

Result<bool> reinstate_user(Writer& writer, const std::string& name) {
  bool was_disabled = false;
  auto r = writer.run([&](WriteTxn& txn) -> Result<void> {
    auto u = txn.user(name);
    if (!u) return Error(Errc::not_found, "no user " + name);
    was_disabled = u->disabled;
    if (was_disabled) {
      u->disabled = false;
      txn.put_user(*u);
    }
    return {};
  });
  if (!r) return r.error();
  return was_disabled;
}

Result<DeviceRevoked> revoke_device(Writer& writer, const std::string& device_id,
                                    const std::string& by, std::int64_t now_ms) {
  DeviceRevoked out;
  auto r = writer.run([&](WriteTxn& txn) -> Result<void> {
    if (!txn.device_known(device_id)) return Error(Errc::not_found, "no device " + device_id);
    if (auto old = txn.device_revocation(device_id)) {
      out.revocation = *old;
      out.already_revoked = true;
    } else {
      out.revocation = DeviceRevocation{device_id, now_ms, by};
      out.already_revoked = false;
      txn.put_device_revocation(out.revocation);
    }
    out.tokens_revoked = txn.revoke_device_tokens(device_id);
    return {};
  });
  if (!r) return r.error();
  return out;
}

Result<bool> reinstate_device(Writer& writer, const std::string& device_id) {
  bool was_revoked = false;
  auto r = writer.run([&](WriteTxn& txn) -> Result<void> {
    if (!txn.device_known(device_id)) return Error(Errc::not_found, "no device " + device_id);
    was_revoked = txn.delete_device_revocation(device_id);
    return {};
  });
  if (!r) return r.error();
  return was_revoked;
}

Auth::Auth(ServerStore& store, Writer& writer, AuthOptions options, Clock now_ms)
    : store_(store), writer_(writer), options_(options), now_ms_(std::move(now_ms)) {}

Result<LoginOutcome> Auth::login(const LoginRequest& request, const std::string& address) {
  const std::int64_t now = now_ms_();
  const std::string user_key = "user:" + request.username;
  const std::string addr_key = "addr:" + address;
  const auto& policy = options_.throttle;

  LoginOutcome out;
  for (const auto* key : {&user_key, &addr_key}) {
    auto s = store_.throttle(*key);
    if (!s) return s.error();
    out.retry_after_s = std::max(out.retry_after_s, retry_after_s(*s, now));
  }
  if (out.retry_after_s > 0) {
    out.kind = LoginOutcome::Kind::throttled;
    return out;
  }

  auto user = store_.user(request.username);
  if (!user) return user.error();
  bool ok = false;
  if (*user) {
    ok = verify_password(request.password, (*user)->password) && !(*user)->disabled;
  } else {
    pbkdf2_sha256(request.password, kDummySalt, kPbkdf2Iterations);
  }

  if (!ok) {
    auto r = writer_.run([&](WriteTxn& txn) -> Result<void> {
      txn.put_throttle(user_key,
                       add_failure(txn.throttle(user_key), now, policy.user_max_failures, policy));
      txn.put_throttle(
          addr_key, add_failure(txn.throttle(addr_key), now, policy.address_max_failures, policy));
      return {};
    });
    if (!r) return r.error();
    out.kind = LoginOutcome::Kind::bad_credentials;
    return out;
  }

  const std::string token = base64url(random_bytes(kTokenBytes));
  TokenRecord t;
  t.hash = token_hash(token);
  t.user = (*user)->name;
  t.device_id = request.device_id;
  t.created_at_ms = now;
  t.expires_at_ms = now + options_.token_ttl_ms;
  // The revocation is checked in the same transaction that issues the token, so
  // no token can slip out for a device being revoked at the same moment.
  bool device_revoked = false;
  auto r = writer_.run([&](WriteTxn& txn) -> Result<void> {
    if (!t.device_id.empty() && txn.device_revocation(t.device_id)) {
      device_revoked = true;
      return {};
    }
    txn.insert_token(t);
    txn.clear_throttle(user_key);
    return {};
  });
  if (!r) return r.error();
  if (device_revoked) {
    out.kind = LoginOutcome::Kind::device_revoked;
    return out;
  }

  out.kind = LoginOutcome::Kind::ok;
  out.response.token = token;
  out.response.expires_at = format_rfc3339_ms(t.expires_at_ms);
  // Addition F: sync requests may carry omit_own_through (docs/protocol.md).
  out.response.features = {"omit_own"};
  out.response.user = UserInfo{(*user)->name, (*user)->role, (*user)->scopes};
  return out;
}

Result<std::optional<Caller>> Auth::authenticate(std::string_view token) {
  if (!is_token_text(token)) return std::optional<Caller>();
  const std::string hash = token_hash(token);
  auto t = store_.token(hash);
  if (!t) return t.error();
  if (!*t || !constant_time_equal((*t)->hash, hash) || (*t)->revoked ||
      (*t)->expires_at_ms <= now_ms_())
    return std::optional<Caller>();
  auto user = store_.user((*t)->user);
  if (!user) return user.error();
  if (!*user || (*user)->disabled) return std::optional<Caller>();
  return std::optional<Caller>(
      Caller{(*user)->name, (*user)->role, (*user)->scopes, (*t)->device_id});
}

Result<void> Auth::logout(std::string_view token) {
  const std::string hash = token_hash(token);
  return writer_.run([&](WriteTxn& txn) -> Result<void> {
    txn.revoke_token(hash);
    return {};
  });
}

}  // namespace fieldsync::server
