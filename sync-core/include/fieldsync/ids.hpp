// Identifiers: UUIDs (v4 for devices, v7 for records: time-ordered, made on the
// device without coordination) and change ids "<device_id>:<counter>".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fieldsync {

// Random UUIDv4, lower-case canonical text. Uses a CSPRNG seeded from the OS.
std::string new_uuid_v4();
// UUIDv7 (RFC 9562): 48-bit Unix ms timestamp then random bits. Lower-case.
std::string new_uuid_v7();
// Same, with a given timestamp (for tests).
std::string new_uuid_v7(std::int64_t unix_millis);

// 8-4-4-4-12 hex digits, either case.
bool is_uuid(std::string_view s) noexcept;

// A device id: 1..64 characters of [A-Za-z0-9_.-] (a UUID in practice).
bool is_valid_device_id(std::string_view s) noexcept;

struct ChangeId {
  std::string device_id;
  std::int64_t counter = 0;  // >= 1

  std::string to_string() const;
  // "<device_id>:<counter>", device id valid, counter a decimal integer 1..2^63-1
  // without sign or leading zeros.
  static std::optional<ChangeId> parse(std::string_view text);
};

// Scope rule of protocol.md: `scope` covers `code` when code == scope or code
// starts with scope + ".". An empty scope covers nothing.
bool scope_covers(std::string_view scope, std::string_view code) noexcept;
// A region code: 1..8 groups of digits separated by single dots ("14.03.01.2001").
bool is_valid_region_code(std::string_view code) noexcept;

}  // namespace fieldsync
