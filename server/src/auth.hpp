// Users, passwords, bearer tokens and login throttling (protocol.md "Auth").
//
// Passwords: PBKDF2-HMAC-SHA256 with a random 16-byte salt and the parameters
// stored beside the hash. Tokens: 32 bytes from the CSPRNG, base64url on the wire,
// only their SHA-256 is stored; compared in constant time. Failed logins are
// counted per username (known or not) and per client address in the store, so
// several server processes share them.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fieldsync/protocol.hpp"
#include "server_store.hpp"
#include "writer.hpp"

namespace fieldsync::server {

inline constexpr std::int64_t kPbkdf2Iterations = 120000;
inline constexpr std::int64_t kDefaultTokenTtlMs = 30LL * 24 * 3600 * 1000;  // 30 days

struct ThrottlePolicy {
  std::int64_t user_max_failures = 5;      // per username within the window
  std::int64_t address_max_failures = 20;  // per client address within the window
  std::int64_t window_ms = 15 * 60 * 1000;
  std::int64_t first_block_ms = 60 * 1000;  // doubles with each further failure
  std::int64_t max_block_ms = 15 * 60 * 1000;
};

struct AuthOptions {
  std::int64_t token_ttl_ms = kDefaultTokenTtlMs;
  ThrottlePolicy throttle;
};

PasswordHash hash_password(std::string_view password, std::int64_t iterations = kPbkdf2Iterations);
bool verify_password(std::string_view password, const PasswordHash& stored);
// A fresh random password for generated accounts (20 base64url characters).
std::string generate_password();

// User names: 1..64 characters of [a-z0-9._-], starting with a letter or digit.
bool is_valid_username(std::string_view name) noexcept;

struct UserSpec {
  std::string name;
  std::string role;  // "officer" | "admin"
  std::vector<std::string> scopes;
  std::string password;
};

// Creates the user, or replaces an existing one's role, scopes and password and
// enables it again. Errc::validation (with field) for a bad name, role, scope or
// an empty password.
Result<void> put_user(Writer& writer, const UserSpec& spec, std::int64_t now_ms,
                      std::int64_t iterations = kPbkdf2Iterations);
// Disables the user and revokes all its tokens; returns how many tokens.
// Errc::not_found when there is no such user.
Result<std::int64_t> revoke_user(Writer& writer, const std::string& name);
// Enables a disabled user again (its revoked tokens stay revoked: it logs in
// anew). Returns whether it was disabled. Errc::not_found when there is no such user.
Result<bool> reinstate_user(Writer& writer, const std::string& name);

struct DeviceRevoked {
  DeviceRevocation revocation;   // as it stands (the first revocation's time and admin)
  bool already_revoked = false;  // it was revoked before this call
  std::int64_t tokens_revoked = 0;
};
// Revokes a device id: every token issued to it ends, logins naming it and syncs
// from it are refused until reinstate_device(). Errc::not_found when the server
// never heard of the device (no token, no sync).
Result<DeviceRevoked> revoke_device(Writer& writer, const std::string& device_id,
                                    const std::string& by, std::int64_t now_ms);
// Lifts a device's revocation; returns whether it was revoked. Its old tokens
// stay revoked. Errc::not_found as for revoke_device().
Result<bool> reinstate_device(Writer& writer, const std::string& device_id);

struct LoginOutcome {
  // device_revoked: the credentials were right but the request's device_id is
  // revoked (no token issued, nothing counted).
  enum class Kind { ok, bad_credentials, throttled, device_revoked };
  Kind kind = Kind::bad_credentials;
  LoginResponse response;          // when ok
  std::int64_t retry_after_s = 0;  // when throttled
};

class Auth {
 public:
  using Clock = std::function<std::int64_t()>;  // Unix ms
  // `store` and `writer` must outlive the Auth. Thread-safe.
  Auth(ServerStore& store, Writer& writer, AuthOptions options, Clock now_ms);

  // Checks credentials with throttling; on success issues a token. Store errors
  // come back as Errors; wrong credentials and throttling as outcomes.
  Result<LoginOutcome> login(const LoginRequest& request, const std::string& address);
  // The caller a bearer token belongs to; nullopt when the token is unknown,
  // malformed, revoked, expired, or its user disabled or gone.
  Result<std::optional<Caller>> authenticate(std::string_view token);
  // Revokes the token (the caller's own).
  Result<void> logout(std::string_view token);

 private:
  ServerStore& store_;
  Writer& writer_;
  AuthOptions options_;
  Clock now_ms_;
};

std::string token_hash(std::string_view token);

}  // namespace fieldsync::server
