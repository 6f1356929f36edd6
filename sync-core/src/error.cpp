// Names and classification of fieldsync error codes.
#include "fieldsync/error.hpp"

namespace fieldsync {

std::string_view errc_name(Errc code) noexcept {
  switch (code) {
    case Errc::ok: return "ok";
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::validation: return "validation";
    case Errc::not_found: return "not_found";
    case Errc::io: return "io";
    case Errc::corrupt: return "corrupt";
    case Errc::schema_too_new: return "schema_too_new";
    case Errc::deleted: return "deleted";
    case Errc::network: return "network";
    case Errc::timeout: return "timeout";
    case Errc::unauthorized: return "unauthorized";
    case Errc::forbidden: return "forbidden";
    case Errc::server: return "server";
    case Errc::protocol: return "protocol";
    case Errc::cancelled: return "cancelled";
    case Errc::throttled: return "throttled";
    case Errc::payload_too_large: return "payload_too_large";
    case Errc::unknown_form: return "unknown_form";
    case Errc::cursor_ahead: return "cursor_ahead";
    case Errc::busy: return "busy";
    case Errc::internal: return "internal";
    case Errc::tls: return "tls";
  }
  return "unknown";
}

bool errc_is_transient(Errc code) noexcept {
  switch (code) {
    case Errc::network:
    case Errc::timeout:
    case Errc::server:
    case Errc::throttled:
    case Errc::busy:
      return true;
    default:
      return false;
  }
}

std::string Error::to_string() const {
  std::string s(errc_name(code));
  if (!field.empty()) s += ": " + field;
  if (!message.empty()) s += ": " + message;
  return s;
}

}  // namespace fieldsync
