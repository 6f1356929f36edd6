// libFuzzer target: a sync request body or a single change as JSON text, through
// decode_sync_request_shape and decode_change, then encode and decode again: the
// decoded value must survive the round trip exactly, through text as well.
#include <cstddef>
#include <cstdint>

#include "fieldsync/protocol.hpp"
#include "fuzz_check.hpp"

using namespace fieldsync;

namespace {

void check_change(const json& j) {
  auto c = decode_change(j);
  if (!c) {
    FUZZ_CHECK(c.error().code == Errc::validation);
    return;
  }
  json encoded = c->to_json();
  auto again = decode_change(encoded);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(*again == *c);
  auto through_text = decode_change(json::parse(encoded.dump()));
  FUZZ_CHECK(through_text.ok());
  FUZZ_CHECK(*through_text == *c);
}

void check_request(const json& j) {
  auto req = decode_sync_request_shape(j);
  if (!req) {
    FUZZ_CHECK(req.error().code == Errc::invalid_argument);
    return;
  }
  FUZZ_CHECK(req->since >= 0 && req->limit >= 0);
  std::vector<Change> decoded;
  for (const auto& raw : req->raw_changes) {
    check_change(raw);
    if (auto c = decode_change(raw)) decoded.push_back(std::move(c).value());
  }
  json body = SyncRequest::encode(req->device_id, decoded, req->since, req->limit);
  auto again = decode_sync_request_shape(json::parse(body.dump()));
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->device_id == req->device_id);
  FUZZ_CHECK(again->since == req->since);
  FUZZ_CHECK(again->limit == req->limit);
  FUZZ_CHECK(again->raw_changes.size() == decoded.size());
  for (std::size_t i = 0; i < decoded.size(); ++i) {
    auto c = decode_change(again->raw_changes[i]);
    FUZZ_CHECK(c.ok());
    FUZZ_CHECK(*c == decoded[i]);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  json j = json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;
  check_request(j);
  check_change(j);
  if (j.is_array())
    for (const auto& item : j) check_change(item);
  return 0;
}
