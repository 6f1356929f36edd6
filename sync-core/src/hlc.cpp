// Hybrid logical clock and the RFC 3339 millisecond timestamps it is written in.
#include "fieldsync/hlc.hpp"

#include <chrono>
#include <cstdio>

namespace fieldsync {
namespace {

using namespace std::chrono;

// Reads exactly n decimal digits at s[pos..pos+n).
bool read_digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}

// Parses "YYYY-MM-DDTHH:MM:SS" at the start of s into Unix seconds.
bool parse_date_time(std::string_view s, std::int64_t& seconds) {
  int y, mo, d, h, mi, se;
  if (s.size() < 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
      s[16] != ':')
    return false;
  if (!read_digits(s, 0, 4, y) || !read_digits(s, 5, 2, mo) || !read_digits(s, 8, 2, d) ||
      !read_digits(s, 11, 2, h) || !read_digits(s, 14, 2, mi) || !read_digits(s, 17, 2, se))
    return false;
  if (y < 1970 || h > 23 || mi > 59 || se > 59) return false;
  year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return false;
  seconds = sys_days{ymd}.time_since_epoch().count() * 86400LL + h * 3600LL + mi * 60LL + se;
  return true;
}

}  // namespace

std::int64_t system_now_ms() noexcept {
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string format_rfc3339_ms(std::int64_t unix_millis) {
  if (unix_millis < 0) unix_millis = 0;
  std::int64_t days = unix_millis / 86400000;
  std::int64_t rest = unix_millis % 86400000;
  year_month_day ymd{sys_days{std::chrono::days{days}}};
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(rest / 3600000), static_cast<int>(rest / 60000 % 60),
                static_cast<int>(rest / 1000 % 60), static_cast<int>(rest % 1000));
  return buf;
}

Result<std::int64_t> parse_rfc3339_ms(std::string_view s) {
  std::int64_t secs = 0;
  if (!parse_date_time(s, secs)) return Error(Errc::invalid_argument, "not an RFC 3339 time");
  std::size_t pos = 19;
  int ms = 0;
  if (pos < s.size() && s[pos] == '.') {
    std::size_t start = ++pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
    std::size_t n = pos - start;
    if (n == 0 || n > 9) return Error(Errc::invalid_argument, "bad fraction of a second");
    int v = 0;
    for (std::size_t i = start; i < start + (n < 3 ? n : 3); ++i) v = v * 10 + (s[i] - '0');
    for (std::size_t i = n; i < 3; ++i) v *= 10;
    ms = v;
  }
  auto zone = s.substr(pos);
  if (zone != "Z" && zone != "z" && zone != "+00:00")
    return Error(Errc::invalid_argument, "time must be UTC (Z)");
  return secs * 1000 + ms;
}

std::string Hlc::to_string() const {
  char counter_buf[8];
  std::snprintf(counter_buf, sizeof counter_buf, "/%04u", counter % (kMaxCounter + 1));
  return format_rfc3339_ms(millis) + counter_buf;
}

Result<Hlc> Hlc::parse(std::string_view text) {
  // "YYYY-MM-DDTHH:MM:SS.mmmZ/NNNN" = 24 + 1 + 4 characters.
  if (text.size() != 29 || text[19] != '.' || text[23] != 'Z' || text[24] != '/')
    return Error(Errc::validation, "hlc must look like 2026-11-28T09:14:03.120Z/0003", "hlc");
  std::int64_t secs = 0;
  int ms = 0, counter = 0;
  if (!parse_date_time(text, secs) || !read_digits(text, 20, 3, ms) ||
      !read_digits(text, 25, 4, counter))
    return Error(Errc::validation, "hlc is not a valid UTC time with a 4-digit counter", "hlc");
  return Hlc{secs * 1000 + ms, static_cast<std::uint32_t>(counter)};
}

Hlc HlcClock::now() {
  std::int64_t wall = wall_ ? wall_() : system_now_ms();
  if (wall > last_.millis) {
    last_ = Hlc{wall, 0};
  } else if (last_.counter < Hlc::kMaxCounter) {
    ++last_.counter;
  } else {
    last_ = Hlc{last_.millis + 1, 0};
  }
  return last_;
}

void HlcClock::observe(const Hlc& remote, std::int64_t max_forward_ms) {
  std::int64_t wall = wall_ ? wall_() : system_now_ms();
  if (remote.millis > wall + max_forward_ms) return;
  if (remote > last_) last_ = remote;
}

}  // namespace fieldsync
