// Errors as values: a small numbered code plus a message, and Result<T>.
//
// The numeric values of Errc cross the C ABI (mobile-bindings/include/fieldsync.h)
// and are stored nowhere else; they never change once released. Add new codes at
// the end. Exceptions never cross a module or ABI boundary: functions that can fail
// in expected ways return Result<T>.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace fieldsync {

enum class Errc : int {
  ok = 0,
  invalid_argument = 1,  // the caller passed something malformed
  validation = 2,        // a value does not satisfy its form; Error::field names it
  not_found = 3,
  io = 4,              // the file system or SQLite failed
  corrupt = 5,         // the database file is damaged or not a fieldsync store
  schema_too_new = 6,  // the store was written by a newer fieldsync
  deleted = 7,         // the record is deleted
  network = 8,         // transient: connection refused, reset, DNS, TLS handshake
  timeout = 9,         // transient: a deadline passed
  unauthorized = 10,   // no, wrong, expired or revoked token / credentials
  forbidden = 11,      // outside the caller's role or scopes
  server = 12,         // transient: 5xx from the server
  protocol = 13,       // the peer broke the wire contract
  cancelled = 14,
  throttled = 15,      // transient: 429
  payload_too_large = 16,
  unknown_form = 17,
  cursor_ahead = 18,
  busy = 19,  // transient: the database is locked by another process
  internal = 20,
  tls = 21,  // certificate verification failed: not transient
};

// Stable snake_case name of a code ("validation", "not_found", ...).
std::string_view errc_name(Errc code) noexcept;

// True when retrying the same operation later may succeed.
bool errc_is_transient(Errc code) noexcept;

struct Error {
  Errc code = Errc::internal;
  std::string message;
  std::string field;  // for validation errors: the field concerned, else empty

  Error() = default;
  Error(Errc c, std::string msg, std::string fld = {})
      : code(c), message(std::move(msg)), field(std::move(fld)) {}

  // "validation: children_count: must be >= 0"
  std::string to_string() const;
};

// Either a T or an Error. Minimal on purpose (std::expected is C++23).
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const& {
    assert(!ok());
    return std::get<1>(v_);
  }
  Error&& error() && {
    assert(!ok());
    return std::get<1>(std::move(v_));
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}

  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const Error& error() const& {
    assert(!ok_);
    return error_;
  }
  Error&& error() && {
    assert(!ok_);
    return std::move(error_);
  }

 private:
  Error error_;
  bool ok_ = true;
};

}  // namespace fieldsync
