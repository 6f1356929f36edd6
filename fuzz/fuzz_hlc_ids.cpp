// libFuzzer target: the text parsers of hlc.hpp and ids.hpp on arbitrary bytes.
// Whatever parses must print back to the same text (or, for RFC 3339 times that
// allow several spellings, to the same instant), and the scope rule must keep its
// algebra. The input is also split at the first '|' into a scope and a code.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fieldsync/hlc.hpp"
#include "fieldsync/ids.hpp"
#include "fuzz_check.hpp"

using namespace fieldsync;

namespace {

// 9999-12-31T23:59:59.999Z, the last instant the text forms can write.
constexpr std::int64_t kMaxMillis = 253402300799999;

void check_text(std::string_view s) {
  if (auto h = Hlc::parse(s)) {
    FUZZ_CHECK(h->millis >= 0 && h->millis <= kMaxMillis);
    FUZZ_CHECK(h->counter <= Hlc::kMaxCounter);
    FUZZ_CHECK(h->to_string() == s);
    auto again = Hlc::parse(h->to_string());
    FUZZ_CHECK(again.ok() && *again == *h);
    // A clock that observed it issues something later (it is not in the future
    // of this wall clock, which stands at the end of time).
    HlcClock clock([] { return std::int64_t{0}; });
    clock.observe(*h, kMaxMillis);
    FUZZ_CHECK(clock.now() > *h);
  } else {
    FUZZ_CHECK(h.error().code == Errc::validation);
  }
  if (auto ms = parse_rfc3339_ms(s)) {
    FUZZ_CHECK(*ms >= 0 && *ms <= kMaxMillis);
    auto text = format_rfc3339_ms(*ms);
    auto again = parse_rfc3339_ms(text);
    FUZZ_CHECK(again.ok() && *again == *ms);
    FUZZ_CHECK(format_rfc3339_ms(*again) == text);
  }
  if (auto id = ChangeId::parse(s)) {
    FUZZ_CHECK(id->counter >= 1);
    FUZZ_CHECK(is_valid_device_id(id->device_id));
    FUZZ_CHECK(id->to_string() == s);
  }
  if (is_uuid(s)) {
    FUZZ_CHECK(s.size() == 36);
    FUZZ_CHECK(ChangeId::parse(std::string(s) + ":1").has_value());
  }
  if (is_valid_region_code(s)) {
    FUZZ_CHECK(scope_covers(s, s));
    FUZZ_CHECK(scope_covers(s, std::string(s) + ".1"));
    FUZZ_CHECK(!scope_covers(std::string(s) + ".1", s));
    FUZZ_CHECK(!scope_covers(s, std::string(s) + "0"));
  }
}

void check_scope(std::string_view scope, std::string_view code) {
  bool covers = scope_covers(scope, code);
  if (covers) {
    FUZZ_CHECK(!scope.empty());
    FUZZ_CHECK(code.substr(0, scope.size()) == scope);
    FUZZ_CHECK(code.size() == scope.size() || code[scope.size()] == '.');
    // Coverage is transitive downwards: a sub-code of a covered code is covered.
    FUZZ_CHECK(scope_covers(scope, std::string(code) + ".7"));
  }
  if (covers && scope_covers(code, scope)) FUZZ_CHECK(scope == code);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  check_text(s);
  if (auto bar = s.find('|'); bar != std::string_view::npos) {
    check_scope(s.substr(0, bar), s.substr(bar + 1));
    check_text(s.substr(0, bar));
    check_text(s.substr(bar + 1));
  }
  // The first 8 bytes as a time: formatting must never fail, and within the
  // range the text can hold it must round trip.
  if (size >= 8) {
    std::int64_t ms;
    std::memcpy(&ms, data, sizeof ms);
    auto text = format_rfc3339_ms(ms);
    FUZZ_CHECK(!text.empty());
    if (ms >= 0 && ms <= kMaxMillis) {
      auto back = parse_rfc3339_ms(text);
      FUZZ_CHECK(back.ok() && *back == ms);
      Hlc h{ms, static_cast<std::uint32_t>(data[0]) % (Hlc::kMaxCounter + 1)};
      auto parsed = Hlc::parse(h.to_string());
      FUZZ_CHECK(parsed.ok() && *parsed == h);
    }
  }
  return 0;
}
