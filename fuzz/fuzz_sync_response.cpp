// libFuzzer target: a sync response (what a device receives) as JSON text, through
// SyncResponse::from_json, and ChangeResult / LogEntry / LoginResponse on their
// own. Whatever decodes must encode and decode back to the same value.
#include <cstddef>
#include <cstdint>

#include "fieldsync/protocol.hpp"
#include "fuzz_check.hpp"

using namespace fieldsync;

namespace {

template <class T>
void check_round_trip(const json& j) {
  auto x = T::from_json(j);
  if (!x) {
    FUZZ_CHECK(x.error().code == Errc::protocol);
    return;
  }
  json encoded = x->to_json();
  auto again = T::from_json(encoded);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(*again == *x);
  auto through_text = T::from_json(json::parse(encoded.dump()));
  FUZZ_CHECK(through_text.ok());
  FUZZ_CHECK(*through_text == *x);
}

void check_response(const json& j) {
  auto r = SyncResponse::from_json(j);
  if (!r) {
    FUZZ_CHECK(r.error().code == Errc::protocol);
    return;
  }
  json encoded = r->to_json();
  auto again = SyncResponse::from_json(json::parse(encoded.dump()));
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->cursor == r->cursor);
  FUZZ_CHECK(again->more == r->more);
  FUZZ_CHECK(again->results == r->results);
  FUZZ_CHECK(again->changes == r->changes);
  FUZZ_CHECK(again->to_json() == encoded);
}

void check_login(const json& j) {
  auto l = LoginResponse::from_json(j);
  if (!l) return;
  auto again = LoginResponse::from_json(l->to_json());
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->to_json() == l->to_json());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  json j = json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;
  check_response(j);
  check_round_trip<ChangeResult>(j);
  check_round_trip<LogEntry>(j);
  check_login(j);
  if (j.is_object()) {
    for (const char* key : {"results", "changes"}) {
      auto it = j.find(key);
      if (it == j.end() || !it->is_array()) continue;
      for (const auto& item : *it) {
        check_round_trip<ChangeResult>(item);
        check_round_trip<LogEntry>(item);
      }
    }
    if (auto e = j.find("error"); e != j.end() && e->is_object())
      if (auto code = e->find("code"); code != e->end() && code->is_string())
        (void)errc_from_wire_code(code->get<std::string>());
  }
  return 0;
}
