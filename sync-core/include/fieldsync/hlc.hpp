// Hybrid logical clock: a wall-clock millisecond time plus a counter that keeps
// timestamps strictly increasing on one device even when the phone's clock jumps
// backwards. Text form (protocol.md): "2026-11-28T09:14:03.120Z/0003".
// HLCs order history for audit; they never decide which value wins a merge.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "fieldsync/error.hpp"

namespace fieldsync {

struct Hlc {
  std::int64_t millis = 0;    // Unix time in ms (UTC)
  std::uint32_t counter = 0;  // 0..9999

  static constexpr std::uint32_t kMaxCounter = 9999;

  std::string to_string() const;
  // Strict: exactly "YYYY-MM-DDTHH:MM:SS.mmmZ/NNNN", a real date, year 1970..9999.
  static Result<Hlc> parse(std::string_view text);

  auto operator<=>(const Hlc&) const = default;
};

// Formats Unix milliseconds as RFC 3339 UTC with milliseconds ("...T09:14:03.120Z").
std::string format_rfc3339_ms(std::int64_t unix_millis);
// Parses what format_rfc3339_ms writes (also accepts no fraction and "+00:00").
Result<std::int64_t> parse_rfc3339_ms(std::string_view text);
// Milliseconds since the Unix epoch from the system clock.
std::int64_t system_now_ms() noexcept;

// Not thread-safe; the device store owns one and persists `last()`.
class HlcClock {
 public:
  using WallClock = std::function<std::int64_t()>;  // Unix ms
  explicit HlcClock(WallClock wall = system_now_ms, Hlc last = {})
      : wall_(std::move(wall)), last_(last) {}

  // A timestamp greater than every one this clock issued or observed. When the
  // wall clock is behind `last()` the millis stay and the counter goes up; when the
  // counter would pass kMaxCounter the millis move forward by one.
  Hlc now();
  // Takes a remote timestamp into account (on receiving data), so that later local
  // timestamps sort after it. Remote times far in the future (more than
  // `max_forward_ms` ahead of the wall clock) are ignored: a phone with a wrong
  // clock must not drag every other clock along.
  void observe(const Hlc& remote, std::int64_t max_forward_ms = 24LL * 3600 * 1000);
  Hlc last() const { return last_; }

 private:
  WallClock wall_;
  Hlc last_;
};

}  // namespace fieldsync
