// UUID generation and the syntax of device ids, change ids, region codes, scopes.
#include "fieldsync/ids.hpp"

#include <array>
#include <charconv>
#include <cstdio>
#include <mutex>
#include <random>

#include "fieldsync/hlc.hpp"

namespace fieldsync {
namespace {

// One generator per process, seeded from the OS (std::random_device reads the
// kernel's CSPRNG on Linux and Android). Guarded: ids may be made on any thread.
std::array<unsigned char, 16> random_bytes16() {
  static std::mutex mu;
  static std::random_device rd;
  static std::mt19937_64 gen([] {
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }());
  std::array<unsigned char, 16> b{};
  std::lock_guard lock(mu);
  for (int i = 0; i < 16; i += 8) {
    std::uint64_t v = gen() ^ (static_cast<std::uint64_t>(rd()) << 32);
    for (int k = 0; k < 8; ++k) b[i + k] = static_cast<unsigned char>(v >> (8 * k));
  }
  return b;
}

std::string format_uuid(const std::array<unsigned char, 16>& b) {
  char out[37];
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                b[14], b[15]);
  return out;
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

}  // namespace

std::string new_uuid_v4() {
  auto b = random_bytes16();
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);
  return format_uuid(b);
}

std::string new_uuid_v7(std::int64_t unix_millis) {
  auto b = random_bytes16();
  auto ms = static_cast<std::uint64_t>(unix_millis);
  for (int i = 0; i < 6; ++i) b[i] = static_cast<unsigned char>(ms >> (8 * (5 - i)));
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x70);
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);
  return format_uuid(b);
}

std::string new_uuid_v7() { return new_uuid_v7(system_now_ms()); }

bool is_uuid(std::string_view s) noexcept {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!is_hex(s[i])) {
      return false;
    }
  }
  return true;
}

bool is_valid_device_id(std::string_view s) noexcept {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

std::string ChangeId::to_string() const { return device_id + ":" + std::to_string(counter); }

std::optional<ChangeId> ChangeId::parse(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto dev = text.substr(0, colon);
  auto num = text.substr(colon + 1);
  if (!is_valid_device_id(dev) || num.empty() || num.size() > 19) return std::nullopt;
  if (num[0] == '0') return std::nullopt;
  for (char c : num)
    if (c < '0' || c > '9') return std::nullopt;
  std::int64_t n = 0;
  auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), n);
  if (ec != std::errc() || p != num.data() + num.size() || n < 1) return std::nullopt;
  return ChangeId{std::string(dev), n};
}

bool scope_covers(std::string_view scope, std::string_view code) noexcept {
  if (scope.empty()) return false;
  if (code.size() < scope.size() || code.substr(0, scope.size()) != scope) return false;
  return code.size() == scope.size() || code[scope.size()] == '.';
}

bool is_valid_region_code(std::string_view code) noexcept {
  if (code.empty() || code.size() > 32) return false;
  int groups = 1;
  bool digit_seen = false;
  for (char c : code) {
    if (c == '.') {
      if (!digit_seen) return false;
      digit_seen = false;
      ++groups;
    } else if (c >= '0' && c <= '9') {
      digit_seen = true;
    } else {
      return false;
    }
  }
  return digit_seen && groups <= 8;
}

}  // namespace fieldsync
